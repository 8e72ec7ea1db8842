import { type Bus, connect, type Message, silentLogger } from '@busbar/core';
import { uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, run, start, watch } from './cli.js';

export interface BrokerCase {
  readonly name: string;
  readonly url: string;
  /** `--idle` for dead-letter walks: a broker that needs longer to hand over the first message gets more. */
  readonly idleMs: number;
  /** Names `topology` must print for topic `t` and group `g`. */
  readonly topology: (topic: string, group: string) => string[];
  /**
   * MQTT: dead letters wait in the reader group's session, which is named after the bus name of the service
   * that wrote them, so the CLI must be given that name (`--name`).
   */
  readonly sameName?: boolean;
  /** Driver options for the suite's own bus and, as `-o key=value`, for every CLI run (same topology). */
  readonly options?: Readonly<Record<string, number | string>>;
}

interface ListJson {
  count: number;
  errors: { errorMessage: string; count: number }[];
  messages: { id: string; payload: unknown; headers: Record<string, string>; deadLetter: { errorMessage: string } }[];
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Dead letters made the way a service makes them: a handler that always throws, no retries. */
export async function makeDeadLetters(
  bus: Bus,
  topic: string,
  group: string,
  boom: number,
  other: number,
): Promise<void> {
  let failed = 0;
  let nth = 0;
  const sub = await bus.subscribe(
    topic,
    (message: Message<unknown>) => {
      failed++;
      throw new Error((message.payload as { fail: string }).fail);
    },
    { group, retry: false },
  );
  // All 'boom' ones first, all with one key (one Kafka partition, in order): a Kafka consumer commits offsets in
  // order, so a dead letter acked behind one a filtered walk left in place is read again (see the README).
  const key = 'one-partition';
  for (let i = 0; i < boom; i++) {
    await bus.publish(topic, { fail: 'boom', n: nth++ }, { key, headers: { origin: 'test' } });
  }
  for (let i = 0; i < other; i++) await bus.publish(topic, { fail: 'other failure', n: nth++ }, { key });
  await waitFor(() => failed >= boom + other, 'the handler to fail every message');
  // Give core the moment it needs to confirm the last dead-letter write before the subscription goes.
  await new Promise((resolve) => setTimeout(resolve, 500));
  await sub.close();
}

export function describeCli(broker: BrokerCase, enabled: boolean): void {
  describe.runIf(enabled)(`busbar CLI on ${broker.name}`, () => {
    const topic = uniqueName('cli');
    const group = 'g';
    const name = uniqueName('svc');
    const options = Object.entries(broker.options ?? {});
    const url = [
      '--url',
      broker.url,
      '--quiet',
      ...(broker.sameName ? ['--name', name] : []),
      ...options.flatMap(([key, value]) => ['-o', `${key}=${value}`]),
    ];
    const walk = [...url, '-g', group, '--idle', String(broker.idleMs)];
    let bus: Bus;

    beforeAll(async () => {
      assertBuilt();
      bus = await connect({ url: broker.url, logger: silentLogger, name, ...broker.options });
      await makeDeadLetters(bus, topic, group, 3, 2);
    });
    afterAll(async () => {
      await bus?.close();
    });

    it('health exits 0 after a round trip', async () => {
      const result = await run(['health', ...url, '--json']);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ ok: true, status: 'up', transport: broker.name });
    });

    it('dlq list shows the count and the errors grouped by text, as a table and as JSON', async () => {
      const table = await run(['dlq', 'list', topic, ...walk]);
      expect(table.code).toBe(0);
      expect(table.stdout).toMatch(/^count +5$/m);
      expect(table.stdout).toMatch(/^3 +Error: boom$/m);
      expect(table.stdout).toMatch(/^2 +Error: other failure$/m);
      const json = await run(['dlq', 'list', topic, ...walk, '--json']);
      const list = JSON.parse(json.stdout) as ListJson;
      expect(list.count).toBe(5);
      expect(list.errors.map((e) => [e.errorMessage, e.count])).toEqual([
        ['boom', 3],
        ['other failure', 2],
      ]);
    });

    it('dlq show --id prints one dead letter with payload, headers and metadata', async () => {
      const list = JSON.parse(
        (await run(['dlq', 'list', topic, ...walk, '--json', '--error', 'boom'])).stdout,
      ) as ListJson;
      const target = list.messages[1];
      expect(target).toBeDefined();
      const json = await run(['dlq', 'show', topic, ...walk, '--id', target?.id ?? '', '--json']);
      expect(json.code).toBe(0);
      const shown = JSON.parse(json.stdout) as Record<string, unknown>;
      expect(shown).toMatchObject({
        id: target?.id,
        payload: target?.payload,
        headers: { origin: 'test' },
        deadLetter: { errorName: 'Error', errorMessage: 'boom', attempts: 1, topic, group },
      });
      const table = await run(['dlq', 'show', topic, ...walk, '--id', target?.id ?? '']);
      expect(table.stdout).toContain(`id              ${target?.id}`);
      expect(table.stdout).toMatch(/^ {2}origin: test$/m);
      expect(table.stdout).toContain('"fail": "boom"');
    });

    it('dlq redrive --dry-run moves nothing; --error boom moves only those, to a live subscriber', async () => {
      const dry = await run(['dlq', 'redrive', topic, ...walk, '--error', 'boom', '--dry-run', '--json']);
      expect(dry.code).toBe(0);
      expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, count: 3 });
      const after = JSON.parse((await run(['dlq', 'list', topic, ...walk, '--json'])).stdout) as ListJson;
      expect(after.count).toBe(5);

      const received: unknown[] = [];
      const sub = await bus.subscribe(topic, (m: Message<unknown>) => void received.push(m.payload), {
        group: 'healthy',
      });
      try {
        const moved = await run(['dlq', 'redrive', topic, ...walk, '--error', 'boom', '--rate', '100', '--json']);
        expect(moved.stderr).toBe('');
        expect(moved.code).toBe(0);
        expect(JSON.parse(moved.stdout)).toMatchObject({ moved: 3 });
        await waitFor(() => received.length >= 3, 'the re-driven messages');
        expect(received.map((p) => (p as { fail: string }).fail)).toEqual(['boom', 'boom', 'boom']);
      } finally {
        await sub.close();
      }
      const left = JSON.parse((await run(['dlq', 'list', topic, ...walk, '--json'])).stdout) as ListJson;
      expect(left.count).toBe(2);
      expect(left.errors.map((e) => e.errorMessage)).toEqual(['other failure']);
    });

    it('dlq purge --yes deletes what is left', async () => {
      const purged = await run(['dlq', 'purge', topic, ...walk, '--yes', '--json']);
      expect(purged.code).toBe(0);
      expect(JSON.parse(purged.stdout)).toMatchObject({ purged: 2 });
      const empty = JSON.parse((await run(['dlq', 'list', topic, ...walk, '--json'])).stdout) as ListJson;
      expect(empty.count).toBe(0);
    });

    it('tail prints messages as they arrive and stops on SIGINT with exit 0', async () => {
      const tailTopic = uniqueName('tail');
      const child = start(['tail', tailTopic, ...url]);
      const tail = watch(child);
      try {
        await tail.until((o) => o.stderr.includes('tailing'));
        await bus.publish(tailTopic, { hello: 'operator' }, { headers: { trace: 'abc' } });
        await tail.until((o) => o.stdout.includes('"hello": "operator"'));
        expect(tail.output().stdout).toMatch(/^trace: abc$/m);
      } finally {
        child.kill('SIGINT');
      }
      expect(await tail.exit).toBe(0);
    });

    it('topology prints what busbar uses on the broker', async () => {
      const result = await run(['topology', topic, ...url, '-g', group]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`${topic}.${group}.dlq`);
      for (const name of broker.topology(topic, group)) expect(result.stdout).toContain(name);
    });
  });
}
