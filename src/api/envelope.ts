// The /v1 response envelope, shaped like the one of Unikraft Cloud's REST API
// (a "status" beside the payload): every JSON answer is
//   {"status":"success","data":{...}}   or   {"status":"error","error":{"code","message"}}
// and this file is the ONE place where error codes become HTTP statuses.
import type { ServerResponse } from 'node:http';
import { describeError, isFlickError } from '../errors.js';


const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  BAD_REQUEST: 400,
  INVALID_JSON: 400,
  INVALID_SPEC: 400,
  IMAGE_INVALID: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  INSTANCE_NOT_FOUND: 404,
  IMAGE_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  WAIT_TIMEOUT: 408,
  NAME_TAKEN: 409,
  VOLUME_INVALID: 400,
  VOLUME_NOT_FOUND: 404,
  SERVICE_NOT_FOUND: 404,
  VOLUME_EXISTS: 409,
  VOLUME_IN_USE: 409, // one writer at a time: the volume is attached elsewhere
  ILLEGAL_TRANSITION: 409,
  START_FAILED: 409, // waited for running, but the instance failed: the request was fine, the app was not
  WAKE_FAILED: 503,
  NO_ADDRESS: 503,
  QUOTA_EXCEEDED: 403, // src/limits: the host's configured quota
  DISK_FULL: 507, // src/limits: the host lacks the space (Insufficient Storage), not the request
  RAM_EXHAUSTED: 507,
  NAME_UNKNOWN: 404,
  MANIFEST_UNKNOWN: 404,
  CLUSTER_UNAVAILABLE: 503, // src/cluster: etcd unreachable, so nothing can be created or moved
  NOT_OWNER: 409, // src/cluster: another host owns the instance now
  HOST_DOWN: 503, // src/cluster: the host that holds the instance is down
  HOST_UNKNOWN: 404, // src/cluster: ?host= names no up host
};

/** HTTP status for an error: by code, else 400 for user errors and 500 for the rest. */
export function statusFor(err: unknown): number {
  if (!isFlickError(err)) return 500;
  return STATUS_BY_CODE[err.code] ?? (err.kind === 'user' ? 400 : 500);
}

export function sendData(res: ServerResponse, status: number, data: unknown): void {
  sendJson(res, status, { status: 'success', data });
}

export function sendError(res: ServerResponse, err: unknown): void {
  const status = statusFor(err);
  const code = isFlickError(err) ? err.code : 'INTERNAL';
  const message = status === 500 && !isFlickError(err) ? `internal error: ${describeError(err)}` : describeError(err);
  const details = isFlickError(err) && err.details ? { details: err.details } : {};
  sendJson(res, status, { status: 'error', error: { code, message, ...details } });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
