/**
 * An error the user can cause and fix (bad path, corrupt model, data that does not fit the
 * model, an unsupported structure). The CLI prints its message as one sentence and exits 2.
 * Anything else that escapes is a bug in slimformer and exits 1 with a stack trace.
 */
export class UserError extends Error {
  readonly exitCode = 2;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UserError';
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}
