/**
 * Child of the scale test: one busbar group subscription (prefetch 1000, concurrency 100, bytes codec, no-op
 * handler) in its own process. It connects, says `ready`, subscribes on `go`, reports its count every 100 ms
 * and, on `stop`, closes (acks flushed) and reports first/last delivery times, CPU and memory.
 */
import { bytesCodec, connect, defineTopic, silentLogger } from '@busbar/core';
import { connectOptions } from './scale-brokers.js';
import { epochMs, type FromMember, type MemberSpec, type ToMember } from './scale-ipc.js';
import { CONCURRENCY, PREFETCH } from './util.js';

const spec = JSON.parse(process.argv[2] ?? '{}') as MemberSpec;
const send = (m: FromMember, then?: () => void) => process.send?.(m, undefined, undefined, then);
const mb = () => Math.round(process.memoryUsage.rss() / 2 ** 20);
const gc = (globalThis as { gc?: () => void }).gc;

const bus = await connect({ logger: silentLogger, ...connectOptions(spec.broker, spec.url, spec.member) });
const topic = defineTopic<Uint8Array>(spec.topic, undefined, { codec: bytesCodec });
gc?.();
const baselineMb = mb();
let peakMb = baselineMb;
const sampler = setInterval(() => {
  peakMb = Math.max(peakMb, mb());
}, 25);
const marks = spec.expect ? [0.1, 0.5, 0.9].map((f) => Math.floor((spec.expect as number) * f)) : [];
const atMb: number[] = [];
/** Live heap after a full GC at each mark: RSS alone cannot tell uncollected garbage from retained memory. */
const liveMb: number[] = [];
let seen = 0;
let firstAt = 0;
let lastAt = 0;
let cpu: NodeJS.CpuUsage | undefined;

const onMessage = () => {
  lastAt = epochMs();
  if (seen++ === 0) firstAt = lastAt;
  if (seen === marks[atMb.length]) {
    atMb.push(mb());
    gc?.();
    liveMb.push(Math.round(process.memoryUsage().heapUsed / 2 ** 20));
  }
};

let subscription: { close(): Promise<void> } | undefined;
let progress: NodeJS.Timeout | undefined;

process.on('message', async (m: ToMember) => {
  if (m.type === 'go') {
    cpu = process.cpuUsage();
    subscription = await bus.subscribe(topic, onMessage, {
      group: spec.group,
      prefetch: PREFETCH,
      concurrency: CONCURRENCY,
      retry: false,
    });
    send({ type: 'subscribed' });
    progress = setInterval(() => send({ type: 'progress', seen }), 100);
    return;
  }
  clearInterval(progress);
  await subscription?.close();
  const used = process.cpuUsage(cpu);
  clearInterval(sampler);
  peakMb = Math.max(peakMb, mb());
  await bus.close();
  const report = { seen, firstAt, lastAt, cpuMs: (used.user + used.system) / 1000, baselineMb, peakMb, atMb, liveMb };
  // Exit once the report is out: client libraries (kafkajs timers) can keep the event loop alive after close.
  send({ type: 'done', ...report }, () => process.exit(0));
});

send({ type: 'ready' });
