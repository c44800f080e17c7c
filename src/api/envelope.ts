// The /v1 response envelope, shaped like the one of Unikraft Cloud's REST API
// (a "status" beside the payload): every JSON answer is
//   {"status":"success","data":{...}}   or   {"status":"error","error":{"code","message"}}
// and this file is the ONE place where error codes become HTTP statuses.
import type { ServerResponse } from 'node:http';
import { describeError, isFlickError } from '../errors.js';
import type { HostErrorCode } from '../error-codes.js';

/** Decided by the error's kind: 400 for a user error, 500 for the rest. */
const BY_KIND = 'by-kind';

/**
 * The HTTP status of every code flickd can raise: a number, or BY_KIND. A
 * Record over the union of codes (error-codes.ts), so a new or renamed code
 * fails to compile until it is decided here.
 */
const STATUS_BY_CODE: Readonly<Record<HostErrorCode, number | typeof BY_KIND>> = {
  // the API itself
  BAD_REQUEST: 400,
  INVALID_JSON: 400,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  UNAUTHORIZED: 401,
  // controller
  ILLEGAL_TRANSITION: 409,
  INSTANCE_NOT_FOUND: 404,
  INVALID_SPEC: 400,
  START_FAILED: 409, // waited for running, but the instance failed: the request was fine, the app was not
  SNAPSHOT_FAILED: BY_KIND,
  WAKE_FAILED: 503,
  WAIT_TIMEOUT: 408,
  // state seam and store
  NAME_TAKEN: 409,
  RECORD_NOT_FOUND: BY_KIND,
  STALE_REVISION: 409, // the record changed under the request: read again and retry
  NOT_OWNER: 409, // another host acts on this instance (a cluster)
  SCHEMA_TOO_NEW: BY_KIND,
  CORRUPT_RECORD: BY_KIND,
  STATE_UNAVAILABLE: 503, // the state backend (a cluster's etcd) cannot be reached
  // cluster
  CLUSTER_UNAVAILABLE: 503, // src/cluster: etcd unreachable, so nothing can be created or moved
  HOST_DOWN: 503, // src/cluster: the host that holds the instance is down
  HOST_UNKNOWN: 404, // src/cluster: ?host= names no up host
  ETCD_UNAVAILABLE: BY_KIND,
  ETCD_REQUEST_FAILED: BY_KIND,
  ETCD_COMPACTED: BY_KIND,
  ETCD_LEASE_NOT_FOUND: BY_KIND,
  ETCD_INVALID_ENDPOINT: BY_KIND,
  HOST_NAME_TAKEN: BY_KIND,
  HOST_NAME_INVALID: BY_KIND,
  // services
  SERVICE_NOT_FOUND: 404,
  DEPLOY_FAILED: 409, // the new instances never became ready; rolled back
  // volumes
  VOLUME_INVALID: 400,
  VOLUME_NOT_FOUND: 404,
  VOLUME_EXISTS: 409,
  VOLUME_IN_USE: 409, // one writer at a time: the volume is attached elsewhere
  VOLUME_FAILED: BY_KIND,
  // limits
  DISK_FULL: 507, // src/limits: the host lacks the space (Insufficient Storage), not the request
  RAM_EXHAUSTED: 507,
  QUOTA_EXCEEDED: 403, // src/limits: the host's configured quota
  NO_ADDRESS: 503,
  // network
  INVALID_POOL: BY_KIND,
  POOL_EXHAUSTED: BY_KIND,
  INVALID_INDEX: BY_KIND,
  SETUP_FAILED: BY_KIND,
  TEARDOWN_FAILED: BY_KIND,
  // proxy
  invalid_route: BY_KIND,
  invalid_certificate: BY_KIND,
  listen_failed: BY_KIND,
  // registry and images
  IMAGE_NOT_FOUND: 404,
  IMAGE_INVALID: 400,
  IMAGE_PREPARE_FAILED: BY_KIND,
  LAYOUT_INVALID: BY_KIND,
  DIGEST_INVALID: BY_KIND,
  BLOB_UNKNOWN: BY_KIND,
  BLOB_UPLOAD_INVALID: BY_KIND,
  BLOB_UPLOAD_UNKNOWN: BY_KIND,
  MANIFEST_BLOB_UNKNOWN: BY_KIND,
  MANIFEST_INVALID: BY_KIND,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: BY_KIND,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: BY_KIND,
  DENIED: BY_KIND,
  UNSUPPORTED: BY_KIND,
  BAD_RESPONSE: BY_KIND,
  // image builds
  DOCKERFILE_INVALID: BY_KIND,
  DOCKERFILE_NOT_FOUND: BY_KIND,
  CONTEXT_INVALID: BY_KIND,
  COPY_SOURCE_MISSING: BY_KIND,
  BASE_IMAGE_MISSING: BY_KIND,
  NO_COMMAND: BY_KIND,
  BUILD_STEP_FAILED: BY_KIND,
  USER_UNKNOWN: BY_KIND,
  TOOL_FAILED: BY_KIND,
  APP_EXITED: BY_KIND,
  INVALID_REFERENCE: BY_KIND,
  // guest
  CONTROL_CONNECT_FAILED: BY_KIND,
  CONTROL_CLOSED: BY_KIND,
  CONTROL_TIMEOUT: BY_KIND,
  CONTROL_REJECTED: BY_KIND,
  CONTROL_PROTOCOL: BY_KIND,
  INVALID_GUEST_CONFIG: BY_KIND,
  INIT_COMPILER_MISSING: BY_KIND,
  INIT_BUILD_FAILED: BY_KIND,
  INIT_NOT_BUILT: BY_KIND,
  KERNEL_SOURCE_MISSING: BY_KIND,
  KERNEL_CONFIG_REJECTED: BY_KIND,
  KERNEL_BUILD_FAILED: BY_KIND,
  KERNEL_NOT_BUILT: BY_KIND,
  // vmm and jail
  KERNEL_MISSING: BY_KIND,
  DISK_MISSING: BY_KIND,
  BOOT_FAILED: BY_KIND,
  NOT_READY: BY_KIND,
  VM_EXITED: BY_KIND,
  INVALID_STATE: BY_KIND,
  RESTORE_FAILED: BY_KIND,
  CLOCK_FAILED: BY_KIND,
  TIMEOUT: BY_KIND,
  QMP_ERROR: BY_KIND,
  QMP_CLOSED: BY_KIND,
  QMP_PROTOCOL: BY_KIND,
  QMP_TIMEOUT: BY_KIND,
  JAIL_SETUP_FAILED: BY_KIND,
  CGROUP_UNAVAILABLE: BY_KIND,
  CGROUP_SETUP_FAILED: BY_KIND,
  JAILER_BUILD_FAILED: BY_KIND,
  UID_POOL_EXHAUSTED: BY_KIND,
};

/** HTTP status for an error: by code, else 400 for user errors and 500 for the rest. */
export function statusFor(err: unknown): number {
  if (!isFlickError(err)) return 500;
  // A code outside the union (a FlickError made with a code of its own) goes by its kind.
  const status = (STATUS_BY_CODE as Readonly<Record<string, number | typeof BY_KIND | undefined>>)[err.code];
  return typeof status === 'number' ? status : err.kind === 'user' ? 400 : 500;
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
