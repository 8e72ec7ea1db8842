import { brokerUrls } from '@busbar/testing';
import { connect } from 'nats';

/** Deletes the streams the default mapping created for these topic prefixes (first segments). */
export async function cleanupStreams(prefixes: readonly string[], url: string = brokerUrls.nats): Promise<void> {
  if (prefixes.length === 0) return;
  const nc = await connect({ servers: new URL(url).host });
  try {
    const jsm = await nc.jetstreamManager();
    for (const p of prefixes) await jsm.streams.delete(`BUSBAR_${p.split('.')[0]}`).catch(() => undefined);
  } finally {
    await nc.close();
  }
}
