import type { StandardSchemaV1 } from '@standard-schema/spec';
import { ValidationError, type ValidationIssue } from './errors.js';
import { toFailure } from './thrown.js';

/**
 * The Standard Schema contract (https://standardschema.dev, the `@standard-schema/spec` types), implemented
 * by zod 3.24+/4, valibot, arktype and others. busbar accepts any of them for topic payloads without
 * depending on one library's types.
 */
export type { StandardSchemaV1 };

type StandardResult<Output> = StandardSchemaV1.Result<Output>;

export type InferOutput<S> = S extends StandardSchemaV1 ? StandardSchemaV1.InferOutput<S> : never;

function toIssues(result: StandardSchemaV1.FailureResult): ValidationIssue[] {
  return result.issues.map((issue) => ({
    message: issue.message,
    path: issue.path?.map((p) => (typeof p === 'object' && p !== null ? p.key : p)),
  }));
}

function describe(issues: ValidationIssue[]): string {
  return issues
    .slice(0, 5)
    .map((i) => (i.path && i.path.length > 0 ? `${i.path.map(String).join('.')}: ${i.message}` : i.message))
    .join('; ');
}

/** Validates synchronously when the schema allows it (zod does), so the hot path has no extra await. */
export function validate<T>(schema: StandardSchemaV1<unknown, T>, value: unknown, what: string): T | Promise<T> {
  let result: StandardResult<T> | Promise<StandardResult<T>>;
  try {
    result = schema['~standard'].validate(value);
  } catch (error) {
    throw broken(error, what);
  }
  if (result instanceof Promise) {
    return result.then(
      (r) => unwrap(r, what),
      (error: unknown) => {
        throw broken(error, what);
      },
    );
  }
  return unwrap(result, what);
}

/** A schema that throws instead of returning issues (a schema library bug): still a typed, permanent failure. */
function broken(error: unknown, what: string): ValidationError {
  const failure = toFailure(error);
  return new ValidationError(`${what}: the schema threw ${failure.name}: ${failure.message}`, [
    { message: failure.message },
  ]);
}

function unwrap<T>(result: StandardResult<T>, what: string): T {
  if (result.issues) {
    const issues = toIssues(result);
    throw new ValidationError(`${what} failed its schema: ${describe(issues)}`, issues);
  }
  return result.value;
}
