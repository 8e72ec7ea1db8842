/**
 * @busbar/rabbitmq: the RabbitMQ transport for busbar (amqplib 2.x).
 * `connect('amqp://user:pass@host:5672/vhost')` loads it by scheme; or pass
 * it explicitly: `connect({ url, driver, ...options })`.
 */
import { defineDriver } from '@busbar/core/transport';
import { rabbitmqOptions } from './options.js';
import { RabbitMQTransport } from './transport.js';

export const driver = defineDriver({
  name: 'rabbitmq',
  schemes: ['amqp', 'amqps'],
  options: rabbitmqOptions,
  secretOptions: [],
  create: (context) => new RabbitMQTransport(context),
});

export type { RabbitMQOptions } from './options.js';
export { DEFAULT_RETRY_BUCKETS, rabbitmqOptions } from './options.js';
