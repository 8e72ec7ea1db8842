/**
 * `node bench/dist/core-pipeline.js [--messages 300000] [--rounds 5]`: the CPU core's consume pipeline costs per
 * message, with no broker and no broker client (issue 18: under 1 us). A transport of this file hands a
 * subscription ready-made deliveries, up to its prefetch, refilled once per event-loop turn as a socket read
 * would, and its ack does nothing. Two blocks per round, alternating:
 *
 * - `core`: `bus.subscribe` with the bench's busbar settings (bytes codec, group, prefetch 1000, concurrency
 *   100, no retry), a handler that only counts;
 * - `driver alone`: the same transport's deliveries acked by a loop with no core in between.
 *
 * Core's cost is the difference of their CPU per message (`process.cpuUsage`, all threads, so V8's background
 * GC counts too).
 */
import { parseArgs } from 'node:util';
import { bytesCodec, connect, defineTopic, silentLogger } from '@busbar/core';
import {
  type Capabilities,
  defineDriver,
  type OutgoingRecord,
  SettleOnce,
  type SubscribeCallbacks,
  type SubscribeSpec,
  type Transport,
  type TransportSubscription,
} from '@busbar/core/transport';
import { z } from 'zod';
import { median } from './lib/util.js';

const { values } = parseArgs({
  options: { messages: { type: 'string', default: '300000' }, rounds: { type: 'string', default: '5' } },
});
const N = Number(values.messages);
const ROUNDS = Number(values.rounds);
const PREFETCH = 1000;
const BODY = Buffer.alloc(256, 0x61);
/** Ids as a driver decodes them from the wire: strings it did not make itself. */
const IDS = Array.from({ length: 4096 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);

class NullDelivery extends SettleOnce<undefined> {
  readonly #feed: Feed;
  constructor(feed: Feed, topic: string, n: number) {
    super(
      {
        id: IDS[n & 4095] as string,
        topic,
        key: undefined,
        headers: {},
        body: BODY,
        timestamp: Date.now(),
        contentType: 'application/octet-stream',
        attempt: 1,
      },
      undefined,
    );
    this.#feed = feed;
  }
  protected ackNative(): undefined {
    this.#feed.settled();
  }
  protected async retryNative(): Promise<void> {
    this.#feed.settled();
  }
  protected releaseNative(): undefined {
    this.#feed.settled();
  }
}

/** Hands out `total` deliveries, at most PREFETCH unsettled, topped up once per turn (setImmediate). */
class Feed implements TransportSubscription {
  #made = 0;
  #open = 0;
  #scheduled = false;
  #stopped = false;
  constructor(
    readonly topic: string,
    readonly total: number,
    readonly onDelivery: (d: NullDelivery) => void,
  ) {}
  start(): void {
    this.#schedule();
  }
  settled(): void {
    this.#open--;
    if (this.#open < PREFETCH / 2) this.#schedule();
  }
  #schedule(): void {
    if (this.#scheduled || this.#stopped) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      while (!this.#stopped && this.#open < PREFETCH && this.#made < this.total) {
        this.#open++;
        this.onDelivery(new NullDelivery(this, this.topic, this.#made++));
      }
    });
  }
  async stop(): Promise<void> {
    this.#stopped = true;
  }
  async close(): Promise<void> {
    this.#stopped = true;
  }
}

const capabilities: Capabilities = { durableGroups: true, ordering: true, wildcards: false };
let nextTotal = 0;

class NullTransport implements Transport {
  readonly capabilities = capabilities;
  readonly maxPayloadBytes = 1024 * 1024;
  async connect(): Promise<void> {}
  async publish(_records: readonly OutgoingRecord[]): Promise<void> {}
  async subscribe(spec: SubscribeSpec, callbacks: SubscribeCallbacks): Promise<TransportSubscription> {
    const feed = new Feed(spec.topic, nextTotal, callbacks.onDelivery);
    feed.start();
    return feed;
  }
  async declareGroup(): Promise<void> {}
  async close(): Promise<void> {}
}

const driver = defineDriver({
  name: 'null',
  schemes: ['null'],
  options: z.object({}),
  create: () => new NullTransport(),
});

function cpuPerMessage(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / N;
}

async function throughCore(round: number): Promise<number> {
  const bus = await connect({ url: 'null://bench', driver, logger: silentLogger });
  const topic = defineTopic<Uint8Array>(`core-pipeline-${round}`, undefined, { codec: bytesCodec });
  let seen = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  nextTotal = N;
  const start = process.cpuUsage();
  const sub = await bus.subscribe(
    topic,
    () => {
      if (++seen === N) done();
    },
    { group: 'bench', prefetch: PREFETCH, concurrency: 100, retry: false },
  );
  await finished;
  const cost = cpuPerMessage(start);
  await sub.close();
  await bus.close();
  return cost;
}

async function driverAlone(round: number): Promise<number> {
  let seen = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const start = process.cpuUsage();
  const feed = new Feed(`core-pipeline-${round}`, N, (d) => {
    void d.ack();
    if (++seen === N) done();
  });
  feed.start();
  await finished;
  return cpuPerMessage(start);
}

const core: number[] = [];
const alone: number[] = [];
for (let round = 0; round <= ROUNDS; round++) {
  const pair = round % 2 ? [driverAlone, throughCore] : [throughCore, driverAlone];
  for (const run of pair) {
    const cost = await run(round);
    // Round 0 warms up the JIT and is not counted.
    if (round > 0) (run === throughCore ? core : alone).push(cost);
  }
}
const show = (xs: number[]) =>
  `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}..${Math.max(...xs).toFixed(2)})`;
const diffs = core.map((c, i) => c - (alone[i] as number));
console.log(`\n${ROUNDS} rounds of ${N} messages, CPU us per message: median (min..max)\n`);
console.log('| block | CPU us/msg |\n| --- | --- |');
console.log(`| deliveries through core (bus.subscribe) | ${show(core)} |`);
console.log(`| the same deliveries acked without core | ${show(alone)} |`);
console.log(`| core's own cost (difference per round) | ${show(diffs)} |`);
process.exit(0);
