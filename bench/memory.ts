import { busbarSide } from './lib/busbar-side.js';
import type { BrokerBench } from './lib/types.js';

/** memory://: busbar only, the cost of core itself (no broker, no network). */
export const memory: BrokerBench = {
  name: 'memory',
  defaultMessages: 50_000,
  backlog: true,
  available: async () => true,
  version: async () => `in-process (Node ${process.version})`,
  busbar: () => busbarSide('busbar', { connect: { url: 'memory://' } }),
};
