import { type Bus, type Codec, connect, defineTopic, silentLogger } from '@busbar/core';
import { MAX_HEADERS_BYTES } from '@busbar/core/transport';
import { brokerAvailable } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOutbox } from '../src/index.js';
import { type TestDb, testDb, tx } from './helpers.js';

const ok = await brokerAvailable('postgres');

/** The error a call fails with (it must fail). */
async function failure(work: () => Promise<unknown>): Promise<Error> {
  const error = await work().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Error);
  return error as Error;
}

function shape(error: Error): { name: string; code: unknown; message: string } {
  return { name: error.name, code: (error as { code?: unknown }).code, message: error.message };
}

const throwingCodec: Codec<unknown> = {
  contentType: 'application/x-broken',
  encode: () => {
    throw new TypeError('cannot encode this');
  },
  decode: () => undefined,
};

/** Inputs core refuses at publish: the outbox must refuse each the same way, before writing anything. */
const REFUSED: ReadonlyArray<{ what: string; topic: string; payload?: unknown; headers?: Record<string, string> }> = [
  { what: 'a tab in a header value', topic: 'a.b', headers: { note: 'one\ttwo' } },
  { what: 'a lone surrogate in a header value', topic: 'a.b', headers: { note: 'x\ud800y' } },
  { what: 'a C1 control in a header value', topic: 'a.b', headers: { note: 'x\u0085y' } },
  { what: 'DEL in a header value', topic: 'a.b', headers: { note: 'x\u007fy' } },
  { what: 'a non-character in a header value', topic: 'a.b', headers: { note: 'x\ufffey' } },
  { what: 'headers over 40 KiB', topic: 'a.b', headers: { big: 'x'.repeat(MAX_HEADERS_BYTES) } },
  { what: "the reserved prefix in any case ('Busbar-x')", topic: 'a.b', headers: { 'Busbar-x': '1' } },
  { what: 'a header name with a space', topic: 'a.b', headers: { 'bad name': '1' } },
  { what: 'a wildcard topic', topic: 'orders.*' },
  { what: 'an empty topic segment', topic: 'a..b' },
  { what: 'a topic over 249 characters', topic: `t.${'x'.repeat(250)}` },
];

describe.runIf(ok)('outbox.add refuses what bus.publish refuses, the same way', () => {
  let db: TestDb;
  let bus: Bus;
  beforeAll(async () => {
    db = await testDb();
    bus = await connect({ url: 'memory://', logger: silentLogger, maxPayloadBytes: 1_000 });
  });
  afterAll(async () => {
    await bus?.close();
    await db?.close();
  });

  for (const input of REFUSED) {
    it(`${input.what}: same class and code as publish; the transaction stays usable`, async () => {
      const { outboxTable } = await db.tables();
      const box = createOutbox({ table: outboxTable });
      const options = input.headers ? { headers: input.headers } : undefined;
      const published = await failure(() => bus.publish(input.topic, input.payload ?? {}, options));
      const id = await tx(db.pool, async (client) => {
        const added = await failure(() => box.add(client, input.topic, input.payload ?? {}, options));
        expect(shape(added)).toEqual(shape(published));
        // Refused before any statement ran: PostgreSQL has not aborted the transaction.
        return box.add(client, 'a.b', { fine: true }, { headers: { note: 'ok' } });
      });
      const { rows } = await db.pool.query(`SELECT message_id, topic, headers FROM ${outboxTable}`);
      expect(rows).toEqual([{ message_id: id, topic: 'a.b', headers: { note: 'ok' } }]);
    });
  }

  it('a message over maxPayloadBytes is a PayloadTooLargeError, counted as publish counts (UTF-8 bytes)', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable, maxPayloadBytes: 1_000 });
    // 300 emoji: 1,202 bytes of JSON, 602 UTF-16 units.
    const payload = '\u{1f600}'.repeat(300);
    const published = await failure(() => bus.publish('a.b', payload, { key: 'k' }));
    const added = await failure(() => box.add(db.pool, 'a.b', payload, { key: 'k' }));
    expect(shape(added)).toEqual(shape(published));
    expect(added).toMatchObject({ code: 'BUSBAR_PAYLOAD_TOO_LARGE', size: 1_203, limit: 1_000 });
    await box.add(db.pool, 'a.b', 'x'.repeat(900), { key: 'k' });
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM ${outboxTable}`)).rows[0].n).toBe(1);
    expect(() => createOutbox({ maxPayloadBytes: 0 })).toThrow(/maxPayloadBytes/);
  });

  it('a codec that throws or returns no bytes is a SerializationError, as at publish', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const broken = defineTopic('a.b', undefined, { codec: throwingCodec });
    const stringly = defineTopic('a.c', undefined, { codec: { ...throwingCodec, encode: () => 'text' as never } });
    for (const topic of [broken, stringly]) {
      const published = await failure(() => bus.publish(topic, {}));
      const added = await failure(() => box.add(db.pool, topic, {}));
      expect(shape(added)).toEqual(shape(published));
      expect(added).toMatchObject({ code: 'BUSBAR_SERIALIZATION' });
    }
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM ${outboxTable}`)).rows[0].n).toBe(0);
  });
});
