/**
 * `node bench/dist/kafka-clients.js [--rounds 4] [--messages 50000]`: is the Kafka client the ceiling of
 * busbar's Kafka rows? Measures what kafkajs (the driver's client) and @platformatic/kafka charge per record,
 * without headers and with the headers busbar's records carry, on both paths (kafkajs twice: as npm installs
 * it, and with the record encoder and decoder @busbar/kafka puts in its place):
 *
 * - publish: sends of 1000 records (256 B, acks=all, 3 partitions), CPU per record;
 * - consume: a fresh group draining the topic from its start, CPU per record from subscribe to the last record
 *   (kafkajs `eachBatch`, platformatic's consumer stream), each handler touching only the value.
 *
 * Rounds alternate the six combinations; the table shows the median and the range. No busbar code runs here but
 * that codec: bench/README.md ("Kafka: the client") sets these beside busbar's own rows.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import {
  Admin,
  MessagesStreamModes,
  Consumer as PConsumer,
  Producer as PProducer,
  ProduceAcks,
} from '@platformatic/kafka';
// @busbar/kafka replaces kafkajs' record encoder and decoder in the copy of kafkajs it loads ('kafkajs');
// 'kafkajs-stock' is kafkajs as npm installs it, a copy @busbar/kafka never loads.
import '@busbar/kafka';
import busbarKafkajs from 'kafkajs';
import kafkajs from 'kafkajs-stock';
import { median } from './lib/util.js';

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '4' }, messages: { type: 'string', default: '50000' } },
});
const ROUNDS = Number(values.rounds);
const N = Number(values.messages);
const BATCH = 1000;
const PARTITIONS = 3;
const brokers = (process.env.BUSBAR_BENCH_KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
const payload = Buffer.alloc(256, 0x61);
/** A fresh busbar record's headers on Kafka: its id, and its content type (bytes codec here). */
const busbarHeaders = () => ({ 'busbar-id': randomUUID(), 'content-type': 'application/octet-stream' });

type Client = 'kafkajs' | 'kafkajs + busbar codec' | 'platformatic';
type Shape = 'none' | 'busbar headers';

const config = { clientId: 'busbar-bench-clients', brokers, logLevel: kafkajs.logLevel.NOTHING };
const kafkas = { kafkajs: new kafkajs.Kafka(config), 'kafkajs + busbar codec': new busbarKafkajs.Kafka(config) };
const kProducers = {
  kafkajs: kafkas.kafkajs.producer({ allowAutoTopicCreation: false }),
  'kafkajs + busbar codec': kafkas['kafkajs + busbar codec'].producer({ allowAutoTopicCreation: false }),
};
const base = { clientId: 'busbar-bench-clients', bootstrapBrokers: brokers };
const pProducer = new PProducer({ ...base, idempotent: false, acks: ProduceAcks.ALL, autocreateTopics: false });
const admin = new Admin(base);

function cpuSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return used.user + used.system;
}

async function send(client: Client, topic: string, shape: Shape): Promise<void> {
  for (let sent = 0; sent < N; sent += BATCH) {
    const count = Math.min(BATCH, N - sent);
    if (client !== 'platformatic') {
      const messages = Array.from({ length: count }, () =>
        shape === 'none' ? { value: payload } : { value: payload, headers: busbarHeaders() },
      );
      await kProducers[client].send({ topic, acks: -1, messages });
    } else {
      const messages = Array.from({ length: count }, () =>
        shape === 'none'
          ? { topic, value: payload }
          : {
              topic,
              value: payload,
              headers: new Map(Object.entries(busbarHeaders()).map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
            },
      );
      await pProducer.send({ messages });
    }
  }
}

async function publishCost(client: Client, topic: string, shape: Shape): Promise<number> {
  const start = process.cpuUsage();
  await send(client, topic, shape);
  return cpuSince(start) / N;
}

async function consumeCost(client: Client, topic: string): Promise<number> {
  const groupId = `busbar-bench-clients-${randomUUID()}`;
  let seen = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const start = process.cpuUsage();
  if (client !== 'platformatic') {
    const consumer = kafkas[client].consumer({ groupId, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        let bytes = 0;
        for (const m of batch.messages) bytes += m.value?.length ?? 0;
        seen += batch.messages.length;
        if (bytes > 0 && seen >= N) done();
      },
    });
    await finished;
    const cost = cpuSince(start) / N;
    await consumer.disconnect();
    return cost;
  }
  const consumer = new PConsumer({ ...base, groupId, maxWaitTime: 100 });
  const stream = await consumer.consume({ topics: [topic], mode: MessagesStreamModes.EARLIEST, autocommit: 100 });
  stream.on('data', (m: { value: Buffer }) => {
    if (m.value.length > 0 && ++seen === N) done();
  });
  await finished;
  const cost = cpuSince(start) / N;
  await stream.close();
  await consumer.close();
  return cost;
}

for (const producer of Object.values(kProducers)) await producer.connect();
const topics: string[] = [];
const results = new Map<string, number[]>();
const record = (key: string, value: number) => results.set(key, [...(results.get(key) ?? []), value]);
const combos: [Client, Shape][] = [
  ['kafkajs', 'none'],
  ['kafkajs', 'busbar headers'],
  ['kafkajs + busbar codec', 'none'],
  ['kafkajs + busbar codec', 'busbar headers'],
  ['platformatic', 'none'],
  ['platformatic', 'busbar headers'],
];
for (let round = 0; round <= ROUNDS; round++) {
  for (const [client, shape] of round % 2 ? [...combos].reverse() : combos) {
    const topic = `busbar-bench-clients-${randomUUID()}`;
    topics.push(topic);
    await admin.createTopics({ topics: [topic], partitions: PARTITIONS, replicas: 1 });
    await new Promise((resolve) => setTimeout(resolve, 1000)); // leaders elected
    const published = await publishCost(client, topic, shape);
    const consumed = await consumeCost(client, topic);
    // Round 0 warms both clients up and is not counted.
    if (round === 0) continue;
    record(`${client}|${shape}|publish`, published);
    record(`${client}|${shape}|consume`, consumed);
  }
}
await admin.deleteTopics({ topics }).catch(() => undefined);
for (const producer of Object.values(kProducers)) await producer.disconnect();
await pProducer.close();
await admin.close();

const show = (xs: number[]) =>
  `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}..${Math.max(...xs).toFixed(1)})`;
console.log(`\n${ROUNDS} rounds of ${N} records, 256 B, CPU us per record: median (min..max)\n`);
console.log('| client | records | publish | consume |\n| --- | --- | --- | --- |');
for (const [client, shape] of combos) {
  const p = results.get(`${client}|${shape}|publish`) ?? [];
  const c = results.get(`${client}|${shape}|consume`) ?? [];
  console.log(`| ${client} | ${shape} | ${show(p)} | ${show(c)} |`);
}
process.exit(0);
