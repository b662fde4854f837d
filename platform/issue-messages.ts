import type { z } from 'zod';

/** How zod 3 named the type of a value it refused ("Expected string, received number"). */
function receivedType(input: unknown): string {
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'array';
  if (typeof input === 'number' && Number.isNaN(input)) return 'nan';
  return typeof input;
}

/** zod 4 refuses ±Infinity as a number; zod 3 took it as a number and its `.int()` refused it as a float. */
function isInfiniteInteger(issue: z.core.$ZodRawIssue): boolean {
  const infinite = typeof issue.input === 'number' && !Number.isFinite(issue.input) && !Number.isNaN(issue.input);
  return infinite && (issue.schema?._zod.def.checks ?? []).some((check) => check._zod.def.check === 'number_format');
}

const quotedList = (values: readonly unknown[]) => values.map((v) => `'${String(v)}'`).join(' | ');

function tooSmall(issue: z.core.$ZodRawIssue<z.core.$ZodIssueTooSmall>): string | undefined {
  const min = String(issue.minimum);
  switch (issue.origin) {
    case 'string':
      return `String must contain ${issue.exact ? 'exactly' : issue.inclusive ? 'at least' : 'over'} ${min} character(s)`;
    case 'array':
      return `Array must contain ${issue.exact ? 'exactly' : issue.inclusive ? 'at least' : 'more than'} ${min} element(s)`;
    case 'number':
      return `Number must be ${issue.exact ? 'exactly' : issue.inclusive ? 'greater than or equal to' : 'greater than'} ${min}`;
    default:
      return undefined;
  }
}

function tooBig(issue: z.core.$ZodRawIssue<z.core.$ZodIssueTooBig>): string | undefined {
  const max = String(issue.maximum);
  switch (issue.origin) {
    case 'string':
      return `String must contain ${issue.exact ? 'exactly' : issue.inclusive ? 'at most' : 'under'} ${max} character(s)`;
    case 'array':
      return `Array must contain ${issue.exact ? 'exactly' : issue.inclusive ? 'at most' : 'less than'} ${max} element(s)`;
    case 'number':
      return `Number must be ${issue.exact ? 'exactly' : issue.inclusive ? 'less than or equal to' : 'less than'} ${max}`;
    default:
      return undefined;
  }
}

const FORMAT_MESSAGES: Record<string, string> = {
  datetime: 'Invalid datetime',
  date: 'Invalid date',
  url: 'Invalid url',
  email: 'Invalid email',
  uuid: 'Invalid uuid',
};

/**
 * The wording of validation problems from zod's built-in checks, for the API's
 * 400 details and the start-up configuration error. Clients read these sentences
 * in `details[].message`; they are zod 3's, kept word for word so that upgrading
 * zod does not change a response. A schema's own message (`.regex(re, 'must be …')`)
 * takes precedence over this map; returning `undefined` leaves zod's default.
 */
export const stableIssueMessage: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'Required';
      if (issue.expected === 'int' || isInfiniteInteger(issue)) return 'Expected integer, received float';
      return `Expected ${issue.expected}, received ${receivedType(issue.input)}`;
    case 'invalid_value': {
      if (issue.schema?._zod.def.type === 'literal') {
        return `Invalid literal value, expected ${JSON.stringify(issue.values[0])}`;
      }
      if (issue.input === undefined) return 'Required';
      if (typeof issue.input !== 'string') {
        return `Expected ${quotedList(issue.values)}, received ${receivedType(issue.input)}`;
      }
      return `Invalid enum value. Expected ${quotedList(issue.values)}, received '${issue.input}'`;
    }
    case 'invalid_union':
      if (issue.discriminator && 'options' in issue && Array.isArray(issue.options)) {
        return `Invalid discriminator value. Expected ${quotedList(issue.options)}`;
      }
      return 'Invalid input';
    case 'invalid_format':
      return FORMAT_MESSAGES[issue.format] ?? 'Invalid';
    case 'too_small':
      return tooSmall(issue);
    case 'too_big':
      return tooBig(issue);
    case 'custom':
      return 'Invalid input';
    default:
      return undefined;
  }
};
