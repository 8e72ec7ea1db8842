/**
 * @busbar/rabbitmq: the RabbitMQ transport for busbar (amqplib 2.x).
 * `connect('amqp://user:pass@host:5672/vhost')` loads it by scheme; or pass
 * it explicitly: `connect({ url, driver, ...options })`.
 */
import { defineDriver, TLS_SECRET_OPTIONS } from '@busbar/core/transport';
import { rabbitmqOptions } from './options.js';
import { RabbitMQTransport } from './transport.js';

export const driver = defineDriver({
  name: 'rabbitmq',
  schemes: ['amqp', 'amqps'],
  options: rabbitmqOptions,
  secretOptions: TLS_SECRET_OPTIONS,
  create: (context) => new RabbitMQTransport(context),
});

export type { RabbitMQOptions } from './options.js';
export { DEFAULT_RETRY_BUCKETS, rabbitmqOptions } from './options.js';
