// One page of the instance list: `GET /v1/instances?limit=N&state=S&after=ID`.
// Without `limit` the whole list comes back as before (no `next`); with it, at
// most N records in the controller's order, and `next` is the cursor (the last
// record's id) to pass as `after` for the page that follows, or null at the end.
// A cursor is an id, not an offset, so records created or removed meanwhile do
// not shift a page; an `after` no longer listed (removed) is a 400, not a guess.
import { z } from 'zod';
import { INSTANCE_STATES } from '../controller/states.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { ApiError, parseBody } from './schemas.js';

export const MAX_PAGE = 10_000;

export const ListQuerySchema = z.object({
  limit: z.coerce
    .number({ error: 'limit must be a whole number' })
    .int({ error: 'limit must be a whole number' })
    .min(1, { error: 'limit must be at least 1' })
    .max(MAX_PAGE, { error: `limit must be at most ${MAX_PAGE}` })
    .optional(),
  state: z.enum(INSTANCE_STATES, { error: `state must be one of ${INSTANCE_STATES.join(', ')}` }).optional(),
  after: z.string().min(1, { error: 'after must be an instance id (the "next" of the previous page)' }).optional(),
});

export interface ListPage {
  records: readonly InstanceRecord[];
  /** Present only when the query asked for a page. */
  next?: string | null;
}

export function listPage(all: readonly InstanceRecord[], params: URLSearchParams): ListPage {
  const q = parseBody(ListQuerySchema, Object.fromEntries(params));
  let start = 0;
  if (q.after !== undefined) {
    const i = all.findIndex((r) => r.id === q.after);
    if (i < 0) throw new ApiError('BAD_REQUEST', `after=${q.after} is no instance on this host (removed meanwhile?): list again from the start`, { kind: 'user' });
    start = i + 1;
  }
  if (q.limit === undefined && q.state === undefined) return { records: start === 0 ? all : all.slice(start) };
  const out: InstanceRecord[] = [];
  let i = start;
  for (; i < all.length && (q.limit === undefined || out.length < q.limit); i++) {
    const r = all[i]!;
    if (q.state === undefined || r.status.state === q.state) out.push(r);
  }
  if (q.limit === undefined) return { records: out };
  // More to come only if some later record matches.
  const more = out.length === q.limit && all.slice(i).some((r) => q.state === undefined || r.status.state === q.state);
  return { records: out, next: more ? out[out.length - 1]!.id : null };
}
