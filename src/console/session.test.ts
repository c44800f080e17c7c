import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { parseCookies, sessionCookie, SessionStore } from './session.js';

const withCookie = (cookie: string) => ({ headers: { cookie } }) as unknown as IncomingMessage;

test('a one-time code opens one session, once, within its lifetime', () => {
  let now = 1_000;
  const s = new SessionStore({ codeTtlMs: 60_000, now: () => now });
  const { code } = s.issueCode();
  const session = s.redeem(code);
  assert.ok(session, 'the code opens a session');
  assert.equal(s.redeem(code), undefined, 'a used code is refused');
  const late = s.issueCode();
  now += 60_001;
  assert.equal(s.redeem(late.code), undefined, 'an expired code is refused');
  assert.equal(s.redeem('made-up'), undefined);
});

test('the cookie names the session until it idles out or is closed', () => {
  let now = 0;
  const s = new SessionStore({ idleMs: 1000, now: () => now });
  const a = s.open();
  const cookie = sessionCookie(a).split(';')[0]!;
  assert.equal(s.fromRequest(withCookie(cookie))?.id, a.id);
  now += 900;
  assert.ok(s.fromRequest(withCookie(cookie)), 'use refreshes it');
  now += 900;
  assert.ok(s.fromRequest(withCookie(cookie)), 'still alive 1.8 s after opening: it was used at 0.9 s');
  now += 1001;
  assert.equal(s.fromRequest(withCookie(cookie)), undefined, 'idle too long');
  const b = s.open();
  s.close(b.id);
  assert.equal(s.fromRequest(withCookie(sessionCookie(b))), undefined, 'closed');
});

test('the session cookie is HttpOnly, SameSite=Strict and scoped to the console', () => {
  const c = sessionCookie(new SessionStore().open());
  for (const attr of ['HttpOnly', 'SameSite=Strict', 'Path=/console/']) assert.ok(c.includes(attr), `${attr} in ${c}`);
  assert.match(sessionCookie(undefined), /Max-Age=0/);
  assert.deepEqual(parseCookies('a=1; flick_session=xyz ; b'), { a: '1', flick_session: 'xyz' });
});
