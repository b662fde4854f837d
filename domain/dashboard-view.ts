/**
 * What the queue dashboard may show of a job: ids and codes only. Job payloads are ids by design and failure
 * reasons are codes (workers/queue-worker.ts), so this changes nothing that is right; it is the net for anything
 * that is not (an old job, a bug, a library's own message), which is shown as `[hidden]` instead.
 */
export const HIDDEN = '[hidden]';

/** Ids, codes, numbers-as-text and ISO times: no spaces, no `@`, nothing a name, an address or a sentence needs. */
const SHOWN_STRING = /^[A-Za-z0-9_.:|+-]{1,120}$/;
const SHOWN_KEY = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const REASON_CODE = /^[a-z][a-z0-9_]{0,63}$/;
const MAX_DEPTH = 6;
const MAX_ENTRIES = 50;

/** A value with every string that is not id-shaped replaced by `[hidden]` (deeply, bounded). */
export function idsOnly(value: unknown, depth = 0): unknown {
  if (value === null || value === undefined || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : HIDDEN;
  if (typeof value === 'string') return SHOWN_STRING.test(value) ? value : HIDDEN;
  if (depth >= MAX_DEPTH || typeof value !== 'object') return HIDDEN;
  if (Array.isArray(value)) return value.slice(0, MAX_ENTRIES).map((item) => idsOnly(item, depth + 1));
  const shown: Record<string, unknown> = {};
  let hiddenKeys = 0;
  for (const [key, item] of Object.entries(value).slice(0, MAX_ENTRIES)) {
    if (SHOWN_KEY.test(key)) shown[key] = idsOnly(item, depth + 1);
    else shown[`${HIDDEN}${++hiddenKeys}`] = HIDDEN;
  }
  return shown;
}

/** A job name as shown: the name when it is a code or id, else `job`. */
export function shownJobName(name: unknown): string {
  return typeof name === 'string' && SHOWN_STRING.test(name) ? name : 'job';
}

/** A failure reason as shown: a reason code, else `[hidden]` (BullMQ's own messages included). */
export function shownReason(reason: unknown): unknown {
  if (reason === null || reason === undefined || reason === '') return reason;
  return typeof reason === 'string' && REASON_CODE.test(reason) ? reason : HIDDEN;
}

/** `Name: code` (what reasonCodeError puts first) and stack frames (code locations): nothing else of a trace. */
const TRACE_HEAD = /^[A-Za-z][A-Za-z0-9]*: [a-z][a-z0-9_]{0,63}$/;
const TRACE_FRAME = /^\s+at (?:[\w$.<>[\]]+ )?\(?(?:node:|file:\/\/|\/)[\w./@:-]+\)?$/;

/** Each stack trace of a job, cut to its reason-code head and its frames. */
export function shownStacktrace(stacktrace: unknown): unknown {
  if (!Array.isArray(stacktrace)) return stacktrace === null || stacktrace === undefined ? stacktrace : [];
  return stacktrace.slice(0, MAX_ENTRIES).map((trace) =>
    typeof trace !== 'string'
      ? HIDDEN
      : trace
          .split('\n')
          .filter((line, i) => (i === 0 ? TRACE_HEAD.test(line) : TRACE_FRAME.test(line)))
          .join('\n'),
  );
}

const ID_ONLY_FIELDS = new Set(['data', 'returnValue', 'returnvalue', 'progress', 'opts', 'template']);
const REASON_FIELDS = new Set(['failedReason', 'deferredFailure']);

/**
 * A dashboard API answer as it may leave: every job-shaped field anywhere in it (payload, return value, progress,
 * options, scheduler templates) ids only, failure reasons codes only, traces cut to frames. The board's own
 * formatters already do the first part; this covers the fields they cannot reach.
 */
export function shownBoardAnswer(answer: unknown, depth = 0): unknown {
  if (depth > 12 || answer === null || typeof answer !== 'object') return answer;
  if (Array.isArray(answer)) return answer.map((item) => shownBoardAnswer(item, depth + 1));
  const shown: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(answer)) {
    if (ID_ONLY_FIELDS.has(key)) shown[key] = idsOnly(value);
    else if (REASON_FIELDS.has(key)) shown[key] = shownReason(value);
    else if (key === 'stacktrace') shown[key] = shownStacktrace(value);
    else if (key === 'name' && typeof value === 'string') shown[key] = shownJobName(value);
    else shown[key] = shownBoardAnswer(value, depth + 1);
  }
  return shown;
}

/** For a read-only role: every queue in the answer marked read-only, which is what hides the board's action buttons. */
export function readOnlyBoardAnswer(answer: unknown, depth = 0): unknown {
  if (depth > 12 || answer === null || typeof answer !== 'object') return answer;
  if (Array.isArray(answer)) return answer.map((item) => readOnlyBoardAnswer(item, depth + 1));
  const marked: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(answer)) marked[key] = readOnlyBoardAnswer(value, depth + 1);
  if ('readOnlyMode' in marked)
    Object.assign(marked, { readOnlyMode: true, allowRetries: false, allowCompletedRetries: false });
  return marked;
}
