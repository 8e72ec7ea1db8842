import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clusterId, KraftNode, kraftAvailable } from './kraft.js';

// The private KRaft nodes other suites start. A cluster id that started with '-' made the storage tool read it
// as an option, and a whole suite failed before its first test (one format in 64).
describe('private KRaft nodes', () => {
  it('cluster ids are 16 random bytes in URL-safe base64 and never start with "-"', () => {
    const ids = Array.from({ length: 5_000 }, clusterId);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it.runIf(kraftAvailable('the KRaft format test'))(
    'formatting takes any cluster id, one with a leading "-" too',
    {
      timeout: 60_000,
    },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'busbar-kraft-format-'));
      try {
        const node = new KraftNode(
          dir,
          {
            'process.roles': 'broker,controller',
            'node.id': 1,
            'controller.quorum.voters': '1@127.0.0.1:1',
            listeners: 'PLAINTEXT://127.0.0.1:2,CONTROLLER://127.0.0.1:1',
            'controller.listener.names': 'CONTROLLER',
            'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
            'log.dirs': join(dir, 'data'),
          },
          2,
        );
        const id = `-${clusterId().slice(1)}`;
        await node.format(id);
        const meta = join(dir, 'data', 'meta.properties');
        expect(existsSync(meta)).toBe(true);
        expect(readFileSync(meta, 'utf8')).toContain(`cluster.id=${id}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
