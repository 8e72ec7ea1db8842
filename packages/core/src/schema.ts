import type { StandardSchemaV1 } from '@standard-schema/spec';
import { TimeoutError, ValidationError, type ValidationIssue } from './errors.js';
import { toFailure } from './thrown.js';
import { withTimeout } from './transport/util.js';

/**
 * The Standard Schema contract (https://standardschema.dev, the `@standard-schema/spec` types), implemented
 * by zod 3.24+/4, valibot, arktype and others. busbar accepts any of them for topic payloads without
 * depending on one library's types.
 */
export type { StandardSchemaV1 };

type StandardResult<Output> = StandardSchemaV1.Result<Output>;

export type InferOutput<S> = S extends StandardSchemaV1 ? StandardSchemaV1.InferOutput<S> : never;

/** At most this many issues are kept: a schema may report one per element of a huge array. */
const MAX_ISSUES = 100;
/**
 * The longest issue message kept, and path shown. Libraries quote the value they got (valibot: `Expected /^x$/
 * but received "..."`): unbounded, a 20 KB token became the error's message, its dead letter's and the logs'.
 */
const MAX_ISSUE_TEXT = 160;
const MAX_PATH_TEXT = 100;

/**
 * How long an asynchronous schema may take before the validation fails with a TimeoutError (callers with a
 * deadline of their own pass it): one that never settled held its subscription's slot, or its publish, for good.
 */
export const SCHEMA_TIMEOUT_MS = 30_000;

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

/** The issues as busbar reports them, whatever shape a schema library (or a broken one) gives them. */
function toIssues(raw: readonly unknown[]): ValidationIssue[] {
  return raw.slice(0, MAX_ISSUES).map((issue) => {
    const i = (typeof issue === 'object' && issue !== null ? issue : {}) as { message?: unknown; path?: unknown };
    const message = typeof i.message === 'string' ? clip(i.message, MAX_ISSUE_TEXT) : 'invalid';
    if (!Array.isArray(i.path)) return { message };
    const path = i.path.map((p: unknown): PropertyKey => {
      const key = typeof p === 'object' && p !== null ? (p as { key?: unknown }).key : p;
      return typeof key === 'string' || typeof key === 'number' || typeof key === 'symbol' ? key : String(key);
    });
    return { message, path };
  });
}

function describe(issues: ValidationIssue[]): string {
  return issues
    .slice(0, 5)
    .map((i) =>
      i.path && i.path.length > 0 ? `${clip(i.path.map(String).join('.'), MAX_PATH_TEXT)}: ${i.message}` : i.message,
    )
    .join('; ');
}

/**
 * Validates synchronously when the schema allows it (zod does), so the hot path has no extra await. An
 * asynchronous schema gets `timeoutMs`.
 */
export function validate<T>(
  schema: StandardSchemaV1<unknown, T>,
  value: unknown,
  what: string,
  timeoutMs: number = SCHEMA_TIMEOUT_MS,
): T | Promise<T> {
  let result: StandardResult<T> | Promise<StandardResult<T>>;
  try {
    result = schema['~standard'].validate(value);
  } catch (error) {
    throw broken(error, what);
  }
  if (result instanceof Promise) {
    const checked = result.then(
      (r) => unwrap(r, what),
      (error: unknown) => {
        throw broken(error, what);
      },
    );
    // Retryable: an asynchronous check (a lookup) may answer next time; the value was never found invalid.
    const bounded = withTimeout(
      checked,
      timeoutMs,
      () => new TimeoutError(`${what}: the schema did not answer within ${timeoutMs} ms`),
    );
    // Whoever awaits the result still gets its rejection; one who gave up on it (a responder, which answers at
    // once that it cannot wait for a response schema) must not leave an unhandled rejection: Node exits on one.
    bounded.catch(() => undefined);
    return bounded;
  }
  return unwrap(result, what);
}

/** What the spec does not allow a result to be: said in a schema failure, never used as the payload. */
function malformed(result: unknown): string | undefined {
  if (typeof result !== 'object' || result === null)
    return `validate() returned ${result === null ? 'null' : typeof result}`;
  const r = result as { issues?: unknown; value?: unknown };
  if (r.issues !== undefined && !Array.isArray(r.issues)) return 'validate() returned issues that are not an array';
  if (r.issues === undefined && !('value' in r)) return 'validate() returned neither value nor issues';
  return undefined;
}

/** A schema that throws instead of returning issues (a schema library bug): still a typed, permanent failure. */
function broken(error: unknown, what: string): ValidationError {
  const failure = toFailure(error);
  const message = clip(failure.message, MAX_ISSUE_TEXT);
  return new ValidationError(`${what}: the schema threw ${clip(failure.name, 60)}: ${message}`, [{ message }]);
}

/**
 * The validated value, or a ValidationError. A result the spec does not allow (a broken or hand-written schema:
 * 42, null, `{}`) is a failure too. Read as-is it became an `undefined` payload that the handler received.
 */
function unwrap<T>(result: StandardResult<T>, what: string): T {
  let problem: string | undefined;
  try {
    problem = malformed(result);
  } catch (error) {
    throw broken(error, what);
  }
  if (problem !== undefined) {
    throw new ValidationError(`${what}: the schema is broken: ${problem}`, [{ message: problem }]);
  }
  if (result.issues === undefined) return (result as StandardSchemaV1.SuccessResult<T>).value;
  let issues: ValidationIssue[];
  try {
    issues = toIssues(result.issues);
  } catch (error) {
    throw broken(error, what);
  }
  throw new ValidationError(`${what} failed its schema: ${describe(issues)}`, issues);
}
