import type { BrokerBench } from './lib/types.js';
import { memory } from './memory.js';
import { redis } from './redis.js';

/** Every transport the bench knows, in run order. */
export const BENCHES: Record<string, BrokerBench> = { memory, redis };
