import type { RssResult } from './report.js';
import type { BrokerBench } from './types.js';

export async function runRss(bench: BrokerBench, messages: number, _payload: number, _dir: string): Promise<RssResult> {
  return { transport: bench.name, backlog: messages, drainRate: 0, baselineRssMb: 0, peakRssMb: 0, error: 'not yet' };
}
