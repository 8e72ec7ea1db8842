import { connect, PublishError, silentLogger } from '@busbar/core';
import { createFaultProxy, sleep, uniqueName, waitFor } from '@busbar/testing';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { freePort, installed, REDIS_SERVER, startRedis, stopRedis, tempDir } from './private-redis.js';

/** Whether the primary's only replica is online and has acknowledged every byte of the replication stream. */
function caughtUp(info: string): boolean {
  const master = /master_repl_offset:(\d+)/.exec(info)?.[1];
  const replica = /slave0:.*state=online.*offset=(\d+)/.exec(info)?.[1];
  return master !== undefined && replica === master;
}

// A private primary and replica (never the shared Redis): the replica is paused and the primary's connection cut.
describe.runIf(installed(REDIS_SERVER))('redis waitReplicas: WAIT on the connection that wrote', () => {
  // ioredis sends a WAIT whose connection dropped again on the next connection, which has written nothing: Redis
  // answers it at once with every replica. The Sentinel SIGSTOP failover test lost 63 of 10,000 confirmed
  // messages that way (written to the old primary, never replicated, "confirmed" by a WAIT on the new one).
  it('a connection cut while WAIT waits rejects the publish (retryable), never resolves it; the bus works after', {
    timeout: 60_000,
  }, async () => {
    const dir = tempDir('wait');
    const [primaryPort, replicaPort] = [await freePort(), await freePort()];
    const primary = await startRedis(primaryPort, dir.path);
    const replica = await startRedis(replicaPort, dir.path, [
      '--replicaof',
      '127.0.0.1',
      String(primaryPort),
      '--dbfilename',
      'replica.rdb',
    ]);
    const admin = new Redis({ port: primaryPort, host: '127.0.0.1' });
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: primaryPort } });
    const bus = await connect({
      url: `redis://127.0.0.1:${proxy.port}`,
      driver,
      logger: silentLogger,
      waitReplicas: 1,
      waitTimeoutMs: 5_000,
      publishTimeoutMs: 15_000,
    });
    const topic = uniqueName('wait');
    try {
      // Online, not only connected: a replica counts in connected_slaves while its first sync still waits (Redis
      // delays a diskless sync by 5 s), and a WAIT then gets no ack from it.
      await waitFor(async () => caughtUp(String(await admin.info('replication'))), 30_000, 'replica online');
      await bus.publish(topic, { n: 1 });

      replica.kill('SIGSTOP');
      const publishing = bus.publish(topic, { n: 2 }).then(
        () => 'resolved',
        (error: unknown) => error,
      );
      // The XADD is answered at once; WAIT waits for the paused replica. Cut the connection under it.
      await sleep(1_000);
      proxy.cutAll();
      const outcome = await publishing;
      expect(outcome).toBeInstanceOf(PublishError);
      expect((outcome as PublishError).retryable).toBe(true);
      expect((outcome as PublishError).message).toContain('replaced before WAIT answered');

      // Once the replica runs again and has caught up, the bus publishes as before.
      replica.kill('SIGCONT');
      await waitFor(async () => caughtUp(String(await admin.info('replication'))), 30_000, 'replica caught up');
      await bus.publish(topic, { n: 3 });
    } finally {
      replica.kill('SIGCONT');
      await bus.close();
      await proxy.close();
      admin.disconnect();
      await stopRedis(replica);
      await stopRedis(primary);
      dir.remove();
    }
  });
});
