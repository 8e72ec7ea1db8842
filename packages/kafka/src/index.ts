/**
 * `@busbar/kafka`: the Kafka transport for busbar, on kafkajs.
 * `connect('kafka://host:9092')` loads it by scheme; or pass `driver` yourself.
 */
import { type Driver, defineDriver, TLS_SECRET_OPTIONS } from '@busbar/core/transport';
import { kafkaOptions } from './options.js';
import { KafkaTransport } from './transport.js';

export const driver: Driver<typeof kafkaOptions> = defineDriver({
  name: 'kafka',
  schemes: ['kafka'],
  options: kafkaOptions,
  secretOptions: TLS_SECRET_OPTIONS,
  create: (context) => new KafkaTransport(context),
});

export type { KafkaRaw } from './codec.js';
export type { KafkaOptions, KafkaOptionsInput } from './options.js';
export { kafkaOptions } from './options.js';
export type { KafkaRequestRecord } from './responder.js';
export { retryTopicFor } from './topology.js';
