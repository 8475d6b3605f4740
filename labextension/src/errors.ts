/** Errors of the host API, in their own module so pure code can test for them. */

/** A non-2xx answer of the host: its status and its `{"message"}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}
