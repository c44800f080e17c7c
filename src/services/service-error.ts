// The services' typed error (its codes in error-codes.ts, mapped at the API and CLI edges).
import { FlickError } from '../errors.js';

/** START_FAILED: a member failed or stopped before it was ready; WAIT_TIMEOUT: it was not ready in time. */
export type ServiceErrorCode = 'SERVICE_NOT_FOUND' | 'NAME_TAKEN' | 'INVALID_SPEC' | 'START_FAILED' | 'WAIT_TIMEOUT';

export class ServiceError extends FlickError<ServiceErrorCode> {}
