import { type BenchConfig, runScenario, type Scenario, type ScenarioResult } from '../lib/harness.js';
import type { BrokerResult } from '../lib/report.js';
import type { BrokerBench, Side } from '../lib/types.js';
import { channelsSide } from './channels.js';
import { peersInstalled } from './load.js';
import { mqtSide } from './mqt.js';

const RABBITMQ_URL = process.env.BUSBAR_BENCH_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/**
 * Peers whose publish resolves without a broker confirm (AMQP: a plain channel, not a confirm channel): their
 * publish rows time writing to the socket, not what busbar times.
 */
const UNCONFIRMED = new Set(['rabbitmq @moleculer/channels', 'rabbitmq @message-queue-toolkit/amqp']);

/** The workload every peer can do: confirmed publishes (where the peer confirms) and a group drain with acks. */
export const PEER_SCENARIOS: readonly Scenario[] = ['publishConcurrent', 'consume'];

/** The peers on one broker; each is compared with busbar in interleaved rounds of its own, as a raw reference. */
async function peersOf(transport: string): Promise<Side[]> {
  const sides: Side[] = [];
  const channels = await channelsSide(transport);
  if (channels) sides.push(channels);
  if (transport === 'rabbitmq') sides.push(await mqtSide(RABBITMQ_URL));
  return sides;
}

/** `npm run bench -- --peers`: busbar against each peer on each broker that has one, the main harness's rounds. */
export async function runPeers(benches: readonly BrokerBench[], config: BenchConfig): Promise<BrokerResult[]> {
  if (!peersInstalled()) throw new Error('the peers are not installed: npm install --prefix bench/peers');
  const scenarios = PEER_SCENARIOS.filter((s) => config.scenarios.includes(s));
  const results: BrokerResult[] = [];
  for (const bench of benches) {
    const version = await bench.version().catch((e) => `unknown (${String(e)})`);
    config.log(`\n== ${bench.name} (${version}) peers`);
    const peers = await peersOf(bench.name).catch((error: unknown) => {
      config.log(`  (no peers: ${String(error)})`);
      return [];
    });
    if (peers.length === 0) {
      await bench.shutdown?.().catch(() => undefined);
      continue;
    }
    const busbar = await bench.busbar();
    const rows: ScenarioResult[] = [];
    try {
      for (const peer of peers) {
        for (const scenario of scenarios) {
          try {
            const row = await runScenario(bench, { busbar, raw: peer }, scenario, config, peer.label);
            const unconfirmed = scenario !== 'consume' && UNCONFIRMED.has(`${bench.name} ${peer.label}`);
            rows.push(unconfirmed ? { ...row, note: 'no confirms' } : row);
          } catch (error) {
            config.log(`  ${scenario} vs ${peer.label} failed: ${(error as Error).stack ?? String(error)}`);
            rows.push({
              scenario,
              messages: 0,
              busbar: { rate: Number.NaN, cpuUs: Number.NaN, samples: [] },
              reference: peer.label,
              error: String((error as Error).message ?? error),
            });
          }
        }
      }
    } finally {
      await busbar.close().catch(() => undefined);
      for (const peer of peers) await peer.close().catch(() => undefined);
      await bench.shutdown?.().catch(() => undefined);
    }
    results.push({ transport: bench.name, version, scenarios: rows });
  }
  return results;
}
