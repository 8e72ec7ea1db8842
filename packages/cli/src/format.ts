/** Small output helpers: aligned tables for people, a progress bar on stderr. No dependency. */

export interface Output {
  out(line: string): void;
  err(line: string): void;
}

export const stdio: Output = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** Control characters from a foreign message must not move the cursor or rewrite the operator's terminal. */
export function printable(text: string): string {
  let out = '';
  for (const char of text) {
    const code = char.charCodeAt(0);
    const control = (code < 0x20 && code !== 0x09 && code !== 0x0a) || (code >= 0x7f && code <= 0x9f);
    out += control ? `\\u${code.toString(16).padStart(4, '0')}` : char;
  }
  return out;
}

/**
 * One JSON document on one line, for `--json`. JSON.stringify escapes the C0 controls but leaves DEL, the C1
 * range (U+009B is an 8-bit CSI that some terminals act on) and U+2028/U+2029 raw; they are escaped here too,
 * so a foreign message's text cannot drive the terminal of an operator who did not pipe the output. The line
 * parses back to the same strings.
 */
export function jsonLine(value: unknown): string {
  return (JSON.stringify(value) ?? 'null').replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

export function truncate(text: string, max: number): string {
  const flat = printable(text.replace(/\s*\n\s*/g, ' '));
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

/** Columns padded to the widest cell; the last column is not padded (no trailing blanks). */
export function table(headers: readonly string[], given: readonly (readonly string[])[]): string[] {
  // Every cell is shown escaped, whatever the caller did: a broker's or a foreign producer's text must not
  // reach the terminal raw (escaping is idempotent: it adds no control characters).
  const rows = given.map((row) => row.map(printable));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)];
}

/** Two columns, name and value, for one record. */
export function keyValues(entries: readonly (readonly [string, string])[]): string[] {
  const width = Math.max(0, ...entries.map(([k]) => k.length));
  return entries.map(([k, v]) => `${k.padEnd(width)}  ${printable(v)}`.trimEnd());
}

export function iso(date: Date | undefined): string {
  return date === undefined || Number.isNaN(date.getTime()) ? '-' : date.toISOString();
}

/**
 * `[#####     ] 50/100` redrawn in place with \r, on stderr, only when stderr is a terminal (never in --json
 * mode or in a pipe, where the redraws would be garbage in a log).
 */
export class ProgressBar {
  readonly #enabled: boolean;
  readonly #total: number | undefined;
  readonly #label: string;
  #drawn = false;

  constructor(label: string, total: number | undefined, enabled: boolean) {
    this.#label = label;
    this.#total = total;
    this.#enabled = enabled;
  }

  update(done: number): void {
    if (!this.#enabled) return;
    const total = this.#total;
    let bar: string;
    if (total !== undefined && total > 0) {
      const filled = Math.min(20, Math.round((done / total) * 20));
      bar = `[${'#'.repeat(filled)}${' '.repeat(20 - filled)}] ${done}/${total}`;
    } else {
      bar = `${done}`;
    }
    process.stderr.write(`\r${this.#label} ${bar}`);
    this.#drawn = true;
  }

  finish(): void {
    if (this.#drawn) process.stderr.write('\n');
    this.#drawn = false;
  }
}

export function showProgress(json: boolean | undefined): boolean {
  return !json && process.stderr.isTTY === true;
}

/** Payloads for people: JSON pretty-printed, bytes as base64 with a note, strings as they are. */
export function renderPayload(payload: unknown): string {
  if (payload instanceof Uint8Array)
    return `(${payload.byteLength} bytes, base64) ${Buffer.from(payload).toString('base64')}`;
  if (typeof payload === 'string') return printable(payload);
  return printable(JSON.stringify(payload, null, 2) ?? 'undefined');
}

/** Payloads for scripts: JSON values as they are, bytes as `{ base64 }`. */
export function jsonPayload(payload: unknown): unknown {
  return payload instanceof Uint8Array ? { base64: Buffer.from(payload).toString('base64') } : payload;
}
