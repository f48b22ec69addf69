// An error caused by the operator's input or environment (bad flag, not root, port in use...).
// The CLI prints its message as one line and exits non-zero, without a stack trace.
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = 'UserError';
  }
}
