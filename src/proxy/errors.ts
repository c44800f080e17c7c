// Errors of the ingress proxy. Only configuration mistakes throw; per-request
// failures become HTTP answers (404, 502, 503, 504) and never escape.
import { FlickError } from '../errors.js';

export type ProxyErrorCode = 'invalid_route' | 'invalid_certificate' | 'listen_failed';

export class ProxyError extends FlickError<ProxyErrorCode> {}
