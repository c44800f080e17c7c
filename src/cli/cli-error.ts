// Errors the flick CLI raises itself (bad usage, flickd unreachable or
// answering oddly, a local image missing). Errors flickd sends back keep the
// code it sent (http-client.ts); exit-codes.ts maps both.
import { FlickError } from '../errors.js';

export type CliErrorCode =
  | 'USAGE' // bad flags or arguments
  | 'INTERRUPTED' // Ctrl-C: the command stopped and cleaned up
  | 'UNAVAILABLE' // flickd cannot be reached
  | 'UNAUTHORIZED' // flickd refused the token
  | 'NOT_FOUND' // flickd answered 404 without a code
  | 'HOST_ERROR' // flickd answered an error without a code
  | 'BAD_RESPONSE' // flickd answered something that is not what the API promises
  | 'HOST_START_FAILED'
  | 'HOST_STOP_FAILED'
  | 'IMAGE_NOT_FOUND'; // not in the local image layout

export class CliError extends FlickError<CliErrorCode> {}
