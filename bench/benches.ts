import { kafkaBench } from './kafka.js';
import type { BrokerBench } from './lib/types.js';
import { memory } from './memory.js';
import { mqtt } from './mqtt.js';
import { nats } from './nats.js';
import { rabbitmq } from './rabbitmq.js';
import { redis } from './redis.js';

/** Every transport the bench knows, in run order. */
export const BENCHES: Record<string, BrokerBench> = { memory, redis, nats, rabbitmq, mqtt, kafka: kafkaBench };
