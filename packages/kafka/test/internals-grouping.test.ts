import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Message, PartitionerArgs } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { busbarPartitioner, type GroupingArgs, groupPerPartition, onePassGrouping } from '../src/internals.js';
import { PartitionLedger } from '../src/partitions.js';

const require = createRequire(import.meta.url);
/** What kafkajs' sendMessages.js calls: the original, or busbar's wrapper in front of it. */
const cached = require('kafkajs/src/producer/groupMessagesPerPartition.js') as (
  args: GroupingArgs,
) => Record<number, Message[]>;

const META = [0, 1, 2].map((partitionId) => ({
  partitionErrorCode: 0,
  partitionId,
  leader: 1,
  replicas: [],
  isr: [],
  offlineReplicas: [],
}));
const messages: Message[] = Array.from({ length: 40 }, (_, n) => ({ key: `k${n % 7}`, value: String(n) }));
const byKey = (args: PartitionerArgs) => Number(String(args.message.key).slice(1)) % 3;

describe('kafkajs internals: grouping a send per partition', () => {
  it("groupPerPartition gives kafkajs' result: the same partitions, records in their order", () => {
    // A partitioner that is not busbar's goes to kafkajs' own grouping, the reference.
    const theirs = cached({ topic: 't', partitionMetadata: META, messages, partitioner: byKey });
    const ours = groupPerPartition({ topic: 't', partitionMetadata: META, messages, partitioner: byKey });
    expect(Object.keys(ours)).toEqual(Object.keys(theirs));
    expect(ours).toEqual(theirs);
    expect(groupPerPartition({ topic: 't', partitionMetadata: [], messages, partitioner: byKey })).toEqual({});
  });

  it("busbar's partitioners take the one-pass grouping, every other partitioner kafkajs' own", () => {
    expect(onePassGrouping).toBe(true);
    const calls: string[] = [];
    const plain = (args: PartitionerArgs) => {
      calls.push('plain');
      return byKey(args);
    };
    const ours = busbarPartitioner((args: PartitionerArgs) => {
      calls.push('busbar');
      return byKey(args);
    });
    const a = cached({ topic: 't', partitionMetadata: META, messages, partitioner: plain });
    const b = cached({ topic: 't', partitionMetadata: META, messages, partitioner: ours });
    expect(b).toEqual(a);
    expect(calls.filter((c) => c === 'busbar')).toHaveLength(40);
    // The driver's partitioner is marked, and keeps a record's partition on it for a re-send.
    const partitioner = new PartitionLedger().partitioner();
    const record: Message = { key: null, value: 'x', headers: { 'busbar-id': 'an-id' } };
    const chosen = partitioner({ topic: 't', partitionMetadata: META, message: record });
    expect(record.partition).toBe(chosen);
    expect(cached({ topic: 't', partitionMetadata: META, messages: [record], partitioner })).toEqual({
      [chosen]: [record],
    });
  });

  // Node's require cache is per process: each load order in a fresh one (the built package, as users get it).
  const internals = fileURLToPath(new URL('../dist/internals.js', import.meta.url));
  const inChild = (script: string): unknown =>
    JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));

  it('installed when @busbar/kafka loads kafkajs; left alone when the application loaded kafkajs first', () => {
    expect(inChild(`const m = await import(${JSON.stringify(internals)}); console.log(m.onePassGrouping);`)).toBe(true);
    const first = `import { createRequire } from 'node:module'; createRequire(${JSON.stringify(internals)})('kafkajs');`;
    expect(
      inChild(`${first} const m = await import(${JSON.stringify(internals)}); console.log(m.onePassGrouping);`),
    ).toBe(false);
  });
});
