/**
 * Freezes a value and everything it holds, for objects shared between callers (a cached principal, a cached settings
 * document): a caller that changes one throws in strict mode instead of changing what the next caller is served.
 * Dates, typed arrays and BSON values are left as they are (freezing their internals would break them); what is
 * frozen already is not walked again.
 */
export function deepFreeze<T>(value: T): T {
  if (
    value &&
    typeof value === 'object' &&
    !Object.isFrozen(value) &&
    !(value instanceof Date) &&
    !ArrayBuffer.isView(value) &&
    !('_bsontype' in value)
  ) {
    Object.freeze(value);
    for (const inner of Object.values(value as Record<string, unknown>)) deepFreeze(inner);
  }
  return value;
}
