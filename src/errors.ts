// One error base for all of Flick. Codes, not messages, decide what happens at
// the edges: the API maps `kind` and `code` to an HTTP status, the CLI to an
// exit code. Messages read "what failed: why, and what to do".

/** Who has to act: the user (bad input, missing image) or the operator/system. */
export type ErrorKind = 'user' | 'system';

export interface FlickErrorOptions {
  cause?: unknown;
  kind?: ErrorKind;
  /** Structured details for API bodies and logs (never parsed back). */
  details?: Record<string, unknown>;
}

export class FlickError<Code extends string = string> extends Error {
  readonly code: Code;
  readonly kind: ErrorKind;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: Code, message: string, options: FlickErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.kind = options.kind ?? 'system';
    this.details = options.details;
  }
}

export function isFlickError(err: unknown): err is FlickError {
  return err instanceof FlickError;
}

/** A one-line description of any thrown value, for logs and CLI output. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
