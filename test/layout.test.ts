import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

/** Every `.ts` file below `dir`. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name));
}

describe('source layout (docs/architecture.md)', () => {
  const files = readdirSync(join(root, 'packages')).flatMap((pkg) => {
    try {
      return sources(join(root, 'packages', pkg, 'src'));
    } catch {
      return [];
    }
  });

  it('no source file is over 400 lines: a file that grows past it is split by concern', () => {
    expect(files.length).toBeGreaterThan(50);
    const long = files
      .map((file) => ({ file: file.slice(root.length + 1), lines: readFileSync(file, 'utf8').split('\n').length - 1 }))
      .filter((f) => f.lines > 400);
    expect(long).toEqual([]);
  });

  it("a client library's private fields and prototypes are touched only in a driver's internals.ts", () => {
    const touching = files.filter(
      (file) =>
        !file.endsWith('internals.ts') && /\.prototype\b|_sendPacket|_rdata|\b_msg\b/.test(readFileSync(file, 'utf8')),
    );
    expect(touching.map((file) => file.slice(root.length + 1))).toEqual([]);
  });
});
