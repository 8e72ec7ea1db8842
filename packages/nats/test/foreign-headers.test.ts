import { connect as netConnect } from 'node:net';
import type { Message } from '@busbar/core';
import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';

const ok = await brokerAvailable('nats');

/** One HPUB as any NATS client may write it: header lines exactly as given. */
async function rawHpub(subject: string, lines: string[], body: string): Promise<void> {
  const url = new URL(brokerUrls.nats);
  const socket = netConnect(Number(url.port || 4222), url.hostname);
  await new Promise((resolve) => socket.once('data', resolve));
  const header = `NATS/1.0\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
  const size = Buffer.byteLength(header) + Buffer.byteLength(body);
  socket.write('CONNECT {"verbose":false,"headers":true,"protocol":1}\r\n');
  socket.write(`HPUB ${subject} ${Buffer.byteLength(header)} ${size}\r\n${header}${body}\r\nPING\r\n`);
  await new Promise((resolve) => socket.once('data', resolve));
  socket.destroy();
}

describe.runIf(ok)('nats: foreign header names NATS cannot carry on', () => {
  it('a dead letter is written without them (named in its metadata) instead of being refused for good', async () => {
    const bus = await connect({ url: brokerUrls.nats, driver, logger: silentLogger });
    const topic = `${uniqueName('fh')}.orders`;
    const group = 'g';
    const after: unknown[] = [];
    await bus.subscribe(
      topic,
      (m) => {
        if ((m.payload as { after?: boolean }).after) return void after.push(m.payload);
        throw new Error('always fails');
      },
      { group, retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 } },
    );
    const dead: Message<unknown>[] = [];
    await bus.subscribeDeadLetters(topic, group, (m) => void dead.push(m));
    // An empty name (the line ':leading: v') and a name with a space: legal on the wire, refused on publish.
    await rawHpub(topic, [':leading: v', 'My Header: w', 'tenant: acme'], '{"n":1}');
    await waitFor(() => dead.length === 1, 20_000, 'the dead letter');
    expect(dead[0]?.payload).toEqual({ n: 1 });
    expect(dead[0]?.headers.tenant).toBe('acme');
    expect(dead[0]?.deadLetter?.attempts).toBe(2);
    expect(dead[0]?.deadLetter?.droppedHeaders).toContain('');
    // The bus still works.
    await bus.publish(topic, { after: true });
    await waitFor(() => after.length === 1, 10_000, 'a message after the foreign one');
    await bus.close();
  });
});
