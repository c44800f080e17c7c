// Errors of the registry, named by the distribution spec's error codes
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes).
// The HTTP status travels with the error because the spec ties some codes to
// more than one status (BLOB_UPLOAD_INVALID is 400 or 416, MANIFEST_INVALID 400 or 413).
import { FlickError } from '../errors.js';

export type RegistryErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED';

const DEFAULT_STATUS: Record<RegistryErrorCode, number> = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
};

export class RegistryError extends FlickError<RegistryErrorCode> {
  readonly status: number;

  constructor(code: RegistryErrorCode, message: string, options: { status?: number; detail?: unknown; cause?: unknown } = {}) {
    super(code, message, {
      kind: 'user',
      cause: options.cause,
      ...(options.detail !== undefined ? { details: { detail: options.detail } } : {}),
    });
    this.status = options.status ?? DEFAULT_STATUS[code];
  }

  /** The spec's JSON error body. */
  toBody(): { errors: Array<{ code: string; message: string; detail?: unknown }> } {
    const detail = this.details?.detail;
    return { errors: [{ code: this.code, message: this.message, ...(detail !== undefined ? { detail } : {}) }] };
  }
}
