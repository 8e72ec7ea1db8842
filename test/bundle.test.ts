import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { rolldown } from 'rolldown';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The root README's "Bundles" paragraph, checked: a service that imports its driver and passes it to
 * `connect()` bundles into one file (rolldown, the bundler vite uses; esbuild and webpack treat a dynamic
 * `import(name)` the same way) and runs with no node_modules beside it. Without `driver`, the bundle cannot
 * load the package by name and fails with a DriverMissingError that says how to pass it.
 */
const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
let dir = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'busbar-bundle-'));
  const bundle = await rolldown({
    input: join(ROOT, 'test', 'fixtures', 'bundle', 'service.ts'),
    platform: 'node',
    logLevel: 'silent',
  });
  await bundle.write({ file: join(dir, 'service.mjs'), format: 'esm', codeSplitting: false });
  await bundle.close();
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a bundled service', () => {
  it('runs from one file with the driver passed explicitly', async (ctx) => {
    if (!(await brokerAvailable('redis'))) return ctx.skip();
    const { stdout } = await run(process.execPath, [join(dir, 'service.mjs'), brokerUrls.redis], {
      cwd: dir,
      timeout: 30_000,
    });
    expect(JSON.parse(stdout.trim())).toEqual({ payload: { n: 5 }, transport: 'redis' });
  });

  it('says how to pass the driver when it was left to be loaded by name', async () => {
    const failure = await run(process.execPath, [join(dir, 'service.mjs'), brokerUrls.redis, 'by-name'], {
      cwd: dir,
      timeout: 30_000,
    }).then(
      () => '',
      (error: { stderr?: string }) => error.stderr ?? '',
    );
    expect(failure).toContain('BUSBAR_DRIVER_MISSING');
    expect(failure).toContain("`import { driver } from '@busbar/redis'` and `connect({ url, driver })`");
  });
});
