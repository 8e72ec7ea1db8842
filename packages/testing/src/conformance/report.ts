import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What one bad-input case got on one transport: an error code, or how it was handled. */
export type Outcome = string;

/**
 * Records what each bad-input case got on one transport, in the order the cases ran, and writes it as JSON
 * into `BUSBAR_BAD_INPUT_REPORT` (default `.bad-input/` in the working directory) when the section ends.
 * `npm run docs:bad-input` turns the files of every transport into the table in docs/bad-input.md, so the
 * table says what the suite saw, not what someone believed.
 */
export class Report {
  readonly #transport: string;
  readonly #rows = new Map<string, Outcome>();

  constructor(transport: string) {
    this.#transport = transport;
  }

  set(label: string, outcome: Outcome): void {
    this.#rows.set(label, outcome);
  }

  get(label: string): Outcome | undefined {
    return this.#rows.get(label);
  }

  write(): void {
    if (this.#rows.size === 0) return;
    const dir = process.env.BUSBAR_BAD_INPUT_REPORT ?? join(process.cwd(), '.bad-input');
    mkdirSync(dir, { recursive: true });
    const body = { transport: this.#transport, at: new Date().toISOString(), cases: Object.fromEntries(this.#rows) };
    writeFileSync(join(dir, `${this.#transport}.json`), `${JSON.stringify(body, null, 2)}\n`);
  }
}
