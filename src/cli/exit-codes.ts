// Exit codes of the flick CLI (BSD sysexits where one fits), decided only here, at the edge.
import { FlickError } from '../errors.js';
import type { FlickErrorCode } from '../error-codes.js';

export const EXIT_OK = 0;
/** A generic failure the user can act on (e.g. an instance in the wrong state). */
export const EXIT_FAILURE = 1;
/** Bad command-line usage. */
export const EXIT_USAGE = 64;
/** Input data was wrong: a Dockerfile error, a bad image reference. */
export const EXIT_DATAERR = 65;
/** A named thing (image, instance) does not exist. */
export const EXIT_NOT_FOUND = 66;
/** flickd could not be reached. */
export const EXIT_UNAVAILABLE = 69;
/** An internal error in Flick or the host. */
export const EXIT_SOFTWARE = 70;
/** Permission or token refused. */
export const EXIT_NOPERM = 77;

/** Interrupted (Ctrl-C): 128 + SIGINT, as shells report it. */
export const EXIT_INTERRUPTED = 130;

/** Decided by the error's kind: EXIT_DATAERR for a user error, EXIT_SOFTWARE for the rest. */
const BY_KIND = 'by-kind';

/**
 * The exit code of every code Flick raises (flickd's, sent back over the API,
 * and the CLI's own). A Record over the union (error-codes.ts): a new or
 * renamed code fails to compile until it is decided here. The request was fine
 * but the instance is in the wrong state (stop of a stopped one), the name is
 * taken or the record moved on: EXIT_FAILURE.
 */
const EXIT_BY_CODE: Readonly<Record<FlickErrorCode, number | typeof BY_KIND>> = {
  BAD_REQUEST: BY_KIND,
  BAD_RESPONSE: BY_KIND,
  BASE_IMAGE_MISSING: BY_KIND,
  BLOB_UPLOAD_INVALID: BY_KIND,
  BOOT_FAILED: BY_KIND,
  BUILD_STEP_FAILED: BY_KIND,
  CGROUP_SETUP_FAILED: BY_KIND,
  CGROUP_UNAVAILABLE: BY_KIND,
  CLOCK_FAILED: BY_KIND,
  CONTEXT_INVALID: BY_KIND,
  CONTROL_CLOSED: BY_KIND,
  CONTROL_CONNECT_FAILED: BY_KIND,
  CONTROL_PROTOCOL: BY_KIND,
  CONTROL_REJECTED: BY_KIND,
  CONTROL_TIMEOUT: BY_KIND,
  COPY_SOURCE_MISSING: BY_KIND,
  CORRUPT_RECORD: BY_KIND,
  DIGEST_INVALID: BY_KIND,
  DISK_FULL: BY_KIND,
  DISK_MISSING: BY_KIND,
  DOCKERFILE_INVALID: BY_KIND,
  HOST_ERROR: BY_KIND,
  HOST_START_FAILED: BY_KIND,
  HOST_STOP_FAILED: BY_KIND,
  IMAGE_INVALID: BY_KIND,
  IMAGE_PREPARE_FAILED: BY_KIND,
  INIT_BUILD_FAILED: BY_KIND,
  INIT_COMPILER_MISSING: BY_KIND,
  INIT_NOT_BUILT: BY_KIND,
  INVALID_GUEST_CONFIG: BY_KIND,
  INVALID_INDEX: BY_KIND,
  INVALID_JSON: BY_KIND,
  INVALID_POOL: BY_KIND,
  INVALID_REFERENCE: BY_KIND,
  INVALID_SPEC: BY_KIND,
  INVALID_STATE: BY_KIND,
  JAILER_BUILD_FAILED: BY_KIND,
  JAIL_SETUP_FAILED: BY_KIND,
  KERNEL_BUILD_FAILED: BY_KIND,
  KERNEL_CONFIG_REJECTED: BY_KIND,
  KERNEL_MISSING: BY_KIND,
  KERNEL_NOT_BUILT: BY_KIND,
  KERNEL_SOURCE_MISSING: BY_KIND,
  LAYOUT_INVALID: BY_KIND,
  MANIFEST_INVALID: BY_KIND,
  METHOD_NOT_ALLOWED: BY_KIND,
  NAME_INVALID: BY_KIND,
  NOT_READY: BY_KIND,
  NO_ADDRESS: BY_KIND,
  NO_ANSWER: BY_KIND,
  NO_COMMAND: BY_KIND,
  POOL_EXHAUSTED: BY_KIND,
  QMP_CLOSED: BY_KIND,
  QMP_ERROR: BY_KIND,
  QMP_PROTOCOL: BY_KIND,
  QMP_TIMEOUT: BY_KIND,
  QUOTA_EXCEEDED: BY_KIND,
  RAM_EXHAUSTED: BY_KIND,
  RECORD_NOT_FOUND: BY_KIND,
  RESTORE_FAILED: BY_KIND,
  SCHEMA_TOO_NEW: BY_KIND,
  SETUP_FAILED: BY_KIND,
  SIZE_INVALID: BY_KIND,
  SNAPSHOT_FAILED: BY_KIND,
  STEP_FAILED: BY_KIND,
  TEARDOWN_FAILED: BY_KIND,
  TIMEOUT: BY_KIND,
  TOOL_FAILED: BY_KIND,
  UID_POOL_EXHAUSTED: BY_KIND,
  UNSUPPORTED: BY_KIND,
  VM_EXITED: BY_KIND,
  WAIT_TIMEOUT: BY_KIND,
  WAKE_FAILED: BY_KIND,
  invalid_route: BY_KIND,
  APP_EXITED: BY_KIND,
  SERVICE_NOT_FOUND: EXIT_NOT_FOUND,
  VOLUME_INVALID: BY_KIND,
  VOLUME_NOT_FOUND: EXIT_NOT_FOUND,
  VOLUME_EXISTS: BY_KIND,
  VOLUME_IN_USE: BY_KIND,
  VOLUME_FAILED: BY_KIND,
  invalid_certificate: BY_KIND,
  ETCD_UNAVAILABLE: BY_KIND,
  CLUSTER_UNAVAILABLE: BY_KIND,
  HOST_DOWN: BY_KIND,
  HOST_UNKNOWN: EXIT_NOT_FOUND,
  ETCD_REQUEST_FAILED: BY_KIND,
  ETCD_COMPACTED: BY_KIND,
  ETCD_LEASE_NOT_FOUND: BY_KIND,
  ETCD_INVALID_ENDPOINT: BY_KIND,
  HOST_NAME_TAKEN: BY_KIND,
  HOST_NAME_INVALID: BY_KIND,
  listen_failed: BY_KIND,
  ILLEGAL_TRANSITION: EXIT_FAILURE,
  NAME_TAKEN: EXIT_FAILURE,
  NOT_OWNER: EXIT_FAILURE,
  STALE_REVISION: EXIT_FAILURE,
  START_FAILED: EXIT_FAILURE,
  DEPLOY_FAILED: EXIT_FAILURE, // rolled back: the request was fine, the new image was not
  INTERRUPTED: EXIT_INTERRUPTED,
  DENIED: EXIT_NOPERM,
  UNAUTHORIZED: EXIT_NOPERM,
  BLOB_UNKNOWN: EXIT_NOT_FOUND,
  BLOB_UPLOAD_UNKNOWN: EXIT_NOT_FOUND,
  DOCKERFILE_NOT_FOUND: EXIT_NOT_FOUND,
  IMAGE_NOT_FOUND: EXIT_NOT_FOUND,
  INSTANCE_NOT_FOUND: EXIT_NOT_FOUND,
  MANIFEST_BLOB_UNKNOWN: EXIT_NOT_FOUND,
  MANIFEST_UNKNOWN: EXIT_NOT_FOUND,
  NAME_UNKNOWN: EXIT_NOT_FOUND,
  NOT_FOUND: EXIT_NOT_FOUND,
  USER_UNKNOWN: EXIT_NOT_FOUND,
  STATE_UNAVAILABLE: EXIT_UNAVAILABLE,
  UNAVAILABLE: EXIT_UNAVAILABLE,
  USAGE: EXIT_USAGE,
};

/** Maps an error to an exit code by its code, else its kind (never by its message). */
export function exitCodeFor(err: unknown): number {
  if (!(err instanceof FlickError)) return EXIT_SOFTWARE;
  // A code this CLI does not know (a newer flickd's) goes by its kind.
  const exit = (EXIT_BY_CODE as Readonly<Record<string, number | typeof BY_KIND | undefined>>)[err.code];
  if (typeof exit === 'number') return exit;
  return err.kind === 'user' ? EXIT_DATAERR : EXIT_SOFTWARE;
}
