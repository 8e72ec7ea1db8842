import { execFile } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * What a user gets from npm: every workspace package is packed (its `prepack` builds it and copies LICENSE in),
 * the tarballs are installed into a fresh project outside the workspace (no workspace links, no `source`
 * condition, so only the built `dist` is reachable), and small ESM and CommonJS programs do a round trip.
 * Offline-friendly: npm takes every third-party dependency from the cache `npm ci` filled.
 */
const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'pack');
const NPM_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];
const PACKAGES = readdirSync(join(ROOT, 'packages')).filter((name) =>
  existsSync(join(ROOT, 'packages', name, 'package.json')),
);
const rootPkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };

interface PackedFile {
  readonly path: string;
}
interface Packed {
  readonly name: string;
  readonly filename: string;
  readonly files: readonly PackedFile[];
}
interface Manifest {
  readonly name: string;
  readonly private?: boolean;
  readonly engines?: { node?: string };
  readonly publishConfig?: { access?: string };
  readonly repository?: { type?: string; url?: string; directory?: string };
  readonly homepage?: string;
  readonly bugs?: { url?: string };
  readonly keywords?: readonly string[];
  readonly files?: readonly string[];
  readonly scripts?: Record<string, string>;
  readonly exports?: Record<string, unknown>;
  readonly dependencies?: Record<string, string>;
  readonly peerDependencies?: Record<string, string>;
  readonly peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

function manifest(name: string): Manifest {
  return JSON.parse(readFileSync(join(ROOT, 'packages', name, 'package.json'), 'utf8')) as Manifest;
}

// npm runs with the same Node as the test (Node 22 and Node 24 passes in CI each check their own).
async function npm(cwd: string, args: string[]): Promise<string> {
  const { stdout } = await run('npm', args, { cwd, maxBuffer: 64 * 1024 * 1024, timeout: 150_000 });
  return stdout;
}

async function node(cwd: string, file: string, url: string): Promise<unknown> {
  const { stdout } = await run(process.execPath, [file, url], { cwd, timeout: 30_000 });
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? 'null');
}

function installedVersion(name: string): string {
  return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
    .version;
}

function freshProject(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'busbar-pack-check', private: true }));
  return dir;
}

async function duKiB(dir: string): Promise<number> {
  const { stdout } = await run('du', ['-sk', dir]);
  return Number(stdout.split(/\s+/)[0]);
}

let work = '';
let packed: Packed[] = [];
let project = '';
let coreOnlyKiB = 0;

beforeAll(async () => {
  // Outside the workspace so npm cannot resolve @busbar/* through the monorepo's node_modules.
  work = mkdtempSync(join(tmpdir(), 'busbar-pack-'));
  const tarballs = join(work, 'tarballs');
  mkdirSync(tarballs);
  const out = await npm(ROOT, [
    'pack',
    ...PACKAGES.flatMap((name) => ['--workspace', `packages/${name}`]),
    '--pack-destination',
    tarballs,
    '--json',
    '--loglevel=error',
  ]);
  packed = JSON.parse(out.slice(out.indexOf('['))) as Packed[];
  // What a TypeScript consumer has next to busbar, at the workspace's versions (so npm takes them from cache).
  const extras = ['zod', 'valibot', '@types/node'].map((name) => `${name}@${installedVersion(name)}`);
  const tgz = (name: string) => join(tarballs, packed.find((p) => p.name === name)?.filename ?? `${name}-missing`);

  project = freshProject(join(work, 'app'));
  const coreOnly = freshProject(join(work, 'core-only'));
  await Promise.all([
    npm(project, ['install', ...NPM_FLAGS, ...packed.map((p) => join(tarballs, p.filename)), ...extras]),
    npm(coreOnly, ['install', ...NPM_FLAGS, tgz('@busbar/core')]),
  ]);
  coreOnlyKiB = await duKiB(join(coreOnly, 'node_modules'));
  for (const file of ['roundtrip.mjs', 'roundtrip.cjs']) copyFileSync(join(FIXTURES, file), join(project, file));
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('npm pack of every package', () => {
  it('packs each package once, with LICENSE, package.json and the built entry point', () => {
    expect(packed.map((p) => p.name).sort()).toEqual(PACKAGES.map((name) => manifest(name).name).sort());
    for (const p of packed) {
      const paths = p.files.map((f) => f.path);
      expect(paths, p.name).toContain('LICENSE');
      expect(paths, p.name).toContain('package.json');
      expect(paths, p.name).toContain('dist/index.js');
      expect(paths, p.name).toContain('dist/index.d.ts');
      expect(
        paths.filter((f) => f.endsWith('.tsbuildinfo') || f.startsWith('test/')),
        p.name,
      ).toEqual([]);
    }
    // postpack removes the copied LICENSE again, so packing leaves the work tree as it was.
    for (const name of PACKAGES) expect(existsSync(join(ROOT, 'packages', name, 'LICENSE')), name).toBe(false);
  });

  it('declares the publishing metadata and the same engines as the root', () => {
    for (const name of PACKAGES) {
      const pkg = manifest(name);
      expect(pkg.private, pkg.name).toBeFalsy();
      expect(pkg.engines?.node, pkg.name).toBe(rootPkg.engines.node);
      expect(pkg.publishConfig?.access, pkg.name).toBe('public');
      expect(pkg.repository, pkg.name).toEqual({
        type: 'git',
        url: 'git+https://github.com/busbar-dev/busbar.git',
        directory: `packages/${name}`,
      });
      expect(pkg.homepage, pkg.name).toMatch(/^https:\/\/github\.com\/busbar-dev\/busbar/);
      expect(pkg.bugs?.url, pkg.name).toBe('https://github.com/busbar-dev/busbar/issues');
      expect(pkg.keywords?.length ?? 0, pkg.name).toBeGreaterThan(1);
      expect(pkg.files, pkg.name).toContain('LICENSE');
      expect(pkg.scripts?.prepack, pkg.name).toMatch(/^tsc -b/);
      expect(pkg.exports?.['./package.json'], pkg.name).toBe('./package.json');
    }
  });

  it('leaves the metrics libraries and vitest to the application (peer dependencies)', () => {
    expect(manifest('opentelemetry').peerDependencies?.['@opentelemetry/api']).toBeDefined();
    expect(manifest('opentelemetry').dependencies?.['@opentelemetry/api']).toBeUndefined();
    expect(manifest('prometheus').peerDependencies?.['prom-client']).toBeDefined();
    expect(manifest('prometheus').dependencies?.['prom-client']).toBeUndefined();
    // The conformance suite is vitest tests: vitest is a required peer of @busbar/testing (its README says so).
    expect(manifest('testing').peerDependencies?.vitest).toBeDefined();
    expect(manifest('testing').peerDependenciesMeta?.vitest?.optional).not.toBe(true);
  });

  it('keeps @busbar/core small on its own', () => {
    // zod is core's only dependency and most of the size; 9.5 MB measured when this test was written.
    console.log(`@busbar/core alone: node_modules is ${(coreOnlyKiB / 1024).toFixed(1)} MiB`);
    expect(coreOnlyKiB).toBeGreaterThan(0);
    expect(coreOnlyKiB).toBeLessThan(20 * 1024);
  });

  it('loads every installed package by name, with ./package.json exported', async () => {
    // @busbar/testing's entry imports vitest (its conformance suite is vitest tests, and vitest is its peer):
    // the fresh project does not install vitest, so testing is loaded here only through ./package.json.
    const names = packed.map((p) => p.name).filter((name) => name !== '@busbar/testing');
    expect(names.length).toBe(packed.length - 1);
    const script = `import { createRequire } from 'node:module';
    const require = createRequire(import.meta.url);
    for (const n of ${JSON.stringify(names)}) {
      if (Object.keys(await import(n)).length === 0) throw new Error(n + ' exports nothing');
    }
    for (const n of ${JSON.stringify(packed.map((p) => p.name))}) {
      if (!require(n + '/package.json').version) throw new Error(n + ' has no version');
    }
    console.log(JSON.stringify('ok'));`;
    writeFileSync(join(project, 'load-all.mjs'), script);
    expect(await node(project, 'load-all.mjs', '')).toBe('ok');
  });

  for (const [label, file, via, n] of [
    ['ESM import', 'roundtrip.mjs', 'esm', 42],
    ['CommonJS require (require(esm))', 'roundtrip.cjs', 'cjs', 7],
  ] as const) {
    it(`${label}: round trip on memory://`, async () => {
      expect(await node(project, file, 'memory://')).toEqual({ n, via });
    });

    it(`${label}: round trip on Redis through the installed @busbar/redis`, async (ctx) => {
      if (!(await brokerAvailable('redis'))) return ctx.skip();
      expect(await node(project, file, brokerUrls.redis)).toEqual({ n, via });
    });
  }

  // Typed payloads as a consumer's compiler sees them: only the installed tarballs' .d.ts, one project per
  // setting users have. The fixture's @ts-expect-error lines make a wrong payload type a failure here too.
  const STRICT = { strict: true, exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true };
  const SETTINGS: ReadonlyArray<readonly [string, 'module' | 'commonjs', Record<string, unknown>]> = [
    ['nodenext, strict, exactOptionalPropertyTypes', 'module', { module: 'nodenext', ...STRICT }],
    ['node16', 'module', { module: 'node16', moduleResolution: 'node16', ...STRICT }],
    ['bundler', 'module', { module: 'preserve', moduleResolution: 'bundler', ...STRICT }],
    ['CommonJS consumer ("type": "commonjs", nodenext)', 'commonjs', { module: 'nodenext', ...STRICT }],
    ['strict off', 'module', { module: 'nodenext', strict: false }],
  ];
  for (const [label, type, options] of SETTINGS) {
    it(`type-checks typed payloads in a consumer project: ${label}`, async () => {
      const dir = join(project, `types-${SETTINGS.findIndex(([l]) => l === label)}`);
      mkdirSync(dir, { recursive: true });
      copyFileSync(join(ROOT, 'test', 'fixtures', 'types', 'typed.ts'), join(dir, 'typed.ts'));
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'types-check', private: true, type }));
      const compilerOptions = { target: 'es2022', lib: ['es2023', 'esnext.disposable'], noEmit: true, ...options };
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['typed.ts'] }));
      const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      const result = await run(process.execPath, [tsc, '-p', dir], { cwd: dir, timeout: 120_000 }).then(
        () => '',
        (error: { stdout?: string }) => error.stdout ?? String(error),
      );
      expect(result).toBe('');
      // A whole tsc run over the packed declarations: seconds alone, much longer beside the broker suites.
    }, 150_000);
  }
});
