// Exit codes of the flick CLI (BSD sysexits where one fits), decided only here, at the edge.
import { FlickError } from '../errors.js';

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

/** Maps an error to an exit code by its kind and code (never by its message). */
export function exitCodeFor(err: unknown): number {
  if (!(err instanceof FlickError)) return EXIT_SOFTWARE;
  if (/NOT_FOUND|UNKNOWN$/.test(err.code)) return EXIT_NOT_FOUND;
  if (err.code === 'UNAUTHORIZED' || err.code === 'DENIED') return EXIT_NOPERM;
  if (err.code === 'UNAVAILABLE') return EXIT_UNAVAILABLE;
  if (err.code === 'USAGE') return EXIT_USAGE;
  // The request was fine but the instance is in the wrong state (stop of a stopped one) or the name is taken.
  if (err.code === 'ILLEGAL_TRANSITION' || err.code === 'NAME_TAKEN' || err.code === 'START_FAILED') return EXIT_FAILURE;
  return err.kind === 'user' ? EXIT_DATAERR : EXIT_SOFTWARE;
}
