/** MongoDB's E11000: a unique index (or the primary key) already holds this value. */
export function isDuplicateKeyError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 11000;
}
