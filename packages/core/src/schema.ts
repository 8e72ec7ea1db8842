import { ValidationError, type ValidationIssue } from './errors.js';

/**
 * The Standard Schema contract (https://standardschema.dev), implemented by
 * zod 3.24+/4, valibot, arktype and others. busbar accepts any of them for
 * topic payloads without depending on one library's types.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

export type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | {
      readonly issues: ReadonlyArray<{
        readonly message: string;
        readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }>;
      }>;
    };

export type InferOutput<S> = S extends StandardSchemaV1<unknown, infer O> ? O : never;

function toIssues(result: Extract<StandardResult<unknown>, { issues: ReadonlyArray<unknown> }>): ValidationIssue[] {
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
  const result = schema['~standard'].validate(value);
  if (result instanceof Promise) return result.then((r) => unwrap(r, what));
  return unwrap(result, what);
}

function unwrap<T>(result: StandardResult<T>, what: string): T {
  if (result.issues) {
    const issues = toIssues(result);
    throw new ValidationError(`${what} failed its schema: ${describe(issues)}`, issues);
  }
  return result.value;
}
