import { brokerUrls } from '@busbar/testing';
import { connect } from 'nats';

/**
 * Deletes the streams the default mapping created for these topic prefixes (first segments), and their
 * groups' retry consumers on the shared retry stream.
 */
export async function cleanupStreams(prefixes: readonly string[], url: string = brokerUrls.nats): Promise<void> {
  if (prefixes.length === 0) return;
  const nc = await connect({ servers: new URL(url).host });
  try {
    const jsm = await nc.jetstreamManager();
    const streams = prefixes.map((p) => `BUSBAR_${p.split('.')[0]}`);
    for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
    try {
      for await (const c of jsm.consumers.list('BUSBAR__busbar_retry')) {
        const filter = c.config.filter_subject ?? '';
        if (streams.some((s) => filter.includes(`.${s}.`))) {
          await jsm.consumers.delete('BUSBAR__busbar_retry', c.name).catch(() => undefined);
        }
      }
    } catch {
      // no retry stream
    }
  } finally {
    await nc.close();
  }
}
