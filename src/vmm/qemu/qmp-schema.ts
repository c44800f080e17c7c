// The QEMU Machine Protocol's wire shapes, validated with zod at the socket.
// Spec: https://www.qemu.org/docs/master/interop/qmp-spec.html — one JSON
// object per line; the server greets, then sends replies (`return` or
// `error`, carrying the `id` the client sent) and asynchronous `event`s.
import { z } from 'zod';

/** `{"QMP": {"version": ..., "capabilities": [...]}}`: the first message on a new connection. */
export const QmpGreetingSchema = z.object({
  QMP: z.object({
    version: z.object({
      qemu: z.object({ major: z.number(), minor: z.number(), micro: z.number() }),
      package: z.string(),
    }),
    capabilities: z.array(z.string()),
  }),
});
export type QmpGreeting = z.infer<typeof QmpGreetingSchema>;

/** Ids are strings this client makes up; QEMU echoes any JSON value back. */
const IdSchema = z.union([z.string(), z.number()]);

export const QmpSuccessSchema = z.object({ return: z.unknown(), id: IdSchema.optional() });
export const QmpErrorReplySchema = z.object({
  error: z.object({ class: z.string(), desc: z.string() }),
  id: IdSchema.optional(),
});
export const QmpEventSchema = z.object({
  event: z.string(),
  data: z.record(z.string(), z.unknown()).optional(),
  timestamp: z.object({ seconds: z.number(), microseconds: z.number() }),
});
export type QmpEvent = z.infer<typeof QmpEventSchema>;

export const QmpMessageSchema = z.union([QmpSuccessSchema, QmpErrorReplySchema, QmpEventSchema]);
export type QmpMessage = z.infer<typeof QmpMessageSchema>;

/** `query-status` (https://www.qemu.org/docs/master/interop/qemu-qmp-ref.html#qapidoc-StatusInfo). */
export const StatusInfoSchema = z.object({ running: z.boolean(), status: z.string() });

/** `query-migrate`; only the fields Flick reads. */
export const MigrationInfoSchema = z.object({
  status: z.string().optional(),
  'error-desc': z.string().optional(),
});

/** Data of the MIGRATION event. */
export const MigrationEventDataSchema = z.object({ status: z.string() });

/**
 * Data of the BLOCK_IO_ERROR event (https://www.qemu.org/docs/master/interop/qemu-qmp-ref.html#qapidoc-BLOCK_IO_ERROR):
 * `device` is the -drive id, `action` what QEMU did (`stop`: the VM is paused, under werror=enospc
 * only when `nospace`), `reason` the host's error text.
 */
export const BlockIoErrorDataSchema = z.object({
  device: z.string(),
  operation: z.string(),
  action: z.string(),
  nospace: z.boolean().optional(),
  reason: z.string().optional(),
});
