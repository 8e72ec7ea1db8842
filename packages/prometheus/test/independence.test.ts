import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const FORBIDDEN = /@busbar\/(opentelemetry|prometheus)|@opentelemetry\/|prom-client/;

function files(dir: string, ext: RegExp): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && ext.test(e.name))
    .map((e) => join(e.parentPath, e.name));
}

const IMPORT =
  /^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/gm;

function imports(source: string): string[] {
  return [...source.matchAll(IMPORT)].map((m) => (m[1] ?? m[2] ?? m[3] ?? m[4]) as string);
}

describe('core does not load the observability packages', () => {
  it('core declares no dependency on them', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'core/package.json'), 'utf8')) as Record<
      string,
      Record<string, string> | undefined
    >;
    const names = ['dependencies', 'peerDependencies', 'optionalDependencies'].flatMap((k) =>
      Object.keys(pkg[k] ?? {}),
    );
    expect(names.length).toBeGreaterThan(0);
    expect(names.filter((n) => FORBIDDEN.test(n))).toEqual([]);
  });

  it("core's sources and build import only relative modules, node: builtins, zod and the Standard Schema types", () => {
    const sources = [...files(join(root, 'core/src'), /\.ts$/), ...files(join(root, 'core/dist'), /\.js$/)];
    expect(sources.length).toBeGreaterThan(10);
    const foreign = sources.flatMap((file) =>
      imports(readFileSync(file, 'utf8'))
        .filter((s) => !s.startsWith('.') && !s.startsWith('node:') && s !== 'zod' && s !== '@standard-schema/spec')
        .map((s) => `${file}: ${s}`),
    );
    expect(foreign.filter((s) => FORBIDDEN.test(s))).toEqual([]);
    expect(foreign.filter((s) => !/@busbar\/(rabbitmq|kafka|nats|redis|mqtt)/.test(s))).toEqual([]);
  });

  it('loading core in a fresh process loads neither package', async () => {
    const { execFileSync } = await import('node:child_process');
    // Runs core's own sources with Node's type stripping; an in-thread hook maps core's `.js` specifiers
    // to its `.ts` files and records every module that gets loaded.
    const script = `
      import { registerHooks } from 'node:module';
      const loaded = [];
      registerHooks({
        resolve(spec, ctx, next) {
          try { return next(spec, ctx); } catch (e) {
            if (spec.startsWith('.') && spec.endsWith('.js')) return next(spec.slice(0, -3) + '.ts', ctx);
            throw e;
          }
        },
        load(url, ctx, next) { loaded.push(url); return next(url, ctx); },
      });
      const core = await import(${JSON.stringify(join(root, 'core/src/index.ts'))});
      const bus = await core.connect('memory://independence');
      await bus.close();
      console.log(JSON.stringify({ ok: typeof core.connect === 'function', loaded }));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '--no-warnings', '-e', script], {
      cwd: join(root, 'core'),
      encoding: 'utf8',
    });
    const result = JSON.parse(out.trim().split('\n').pop() as string) as { ok: boolean; loaded: string[] };
    expect(result.loaded.some((u) => u.includes('/core/src/bus.ts'))).toBe(true);
    expect(result.ok).toBe(true);
    expect(result.loaded.filter((f) => FORBIDDEN.test(f))).toEqual([]);
  });
});
