import { bytesCodec, defineTopic } from '@busbar/core';
import { expect, it } from 'vitest';
import { recorder, type Suite } from './context.js';

/** `text` as UTF-16 big-endian behind a byte order mark: what Java's `getBytes("UTF-16")` writes. */
function javaUtf16(text: string): Uint8Array {
  const le = Buffer.from(text, 'utf16le');
  const be = Buffer.alloc(le.length + 2);
  be[0] = 0xfe;
  be[1] = 0xff;
  for (let i = 0; i < le.length; i += 2) {
    be[i + 2] = le[i + 1] as number;
    be[i + 3] = le[i] as number;
  }
  return be;
}

/**
 * How bodies with a content type of their own reach a handler on the default JSON codec. The bodies go out
 * through a topic whose codec hands over the bytes as they are with the given content type, so they arrive
 * in the broker's own content-type field exactly as another service's would.
 */
export function contentTypeTests(s: Suite): void {
  const publishAs = (bus: Awaited<ReturnType<Suite['bus']>>, name: string, contentType: string, body: Uint8Array) =>
    bus.publish(defineTopic(name, undefined, { codec: { ...bytesCodec, contentType } }), body);

  it('JSON and text in the charset their content type names (UTF-16 with a byte order mark, ISO-8859-1) reach the handler decoded', async () => {
    const bus = await s.bus();
    const topic = s.topic('charset');
    const got = recorder();
    await bus.subscribe(topic, got.handler, { group: s.group() });
    await s.settle();
    const sent = new Map<string, unknown>();
    const send = async (contentType: string, body: Uint8Array, expected: unknown) => {
      sent.set(await publishAs(bus, topic, contentType, body), expected);
    };
    await send('application/json; charset=UTF-16', javaUtf16('{"name":"Zoë ✓","ok":true}'), {
      name: 'Zoë ✓',
      ok: true,
    });
    await send('Application/JSON; Charset="ISO-8859-1"', Buffer.from('{"name":"Zoë"}', 'latin1'), { name: 'Zoë' });
    await send('application/vnd.acme.order+json;charset=utf-8', Buffer.from('{"n":1}'), { n: 1 });
    await send('text/plain; charset=UTF-16', javaUtf16('Grüße'), 'Grüße');
    await s.waitFor(() => got.messages.length >= sent.size, 20_000, 'the four messages');
    for (const m of got.messages) expect(m.payload, `payload of ${m.contentType}`).toEqual(sent.get(m.id));
    expect(got.messages).toHaveLength(sent.size);
  });

  it('a topic with an explicit codec decodes a structured CloudEvent whole with it, its attributes beside', async () => {
    const bus = await s.bus();
    const topic = s.topic('cecodec');
    const got: { payload: unknown; id: string | undefined }[] = [];
    await bus.subscribe(
      defineTopic(topic, undefined, { codec: bytesCodec }),
      (m) => void got.push({ payload: m.payload, id: m.cloudEvent?.id }),
      { group: s.group() },
    );
    await s.settle();
    const envelope = Buffer.from(
      JSON.stringify({ specversion: '1.0', id: 'ce-bytes', source: '/conformance', type: 't', data: { n: 1 } }),
    );
    await publishAs(bus, topic, 'application/cloudevents+json', envelope);
    await s.waitFor(() => got.length === 1, 20_000, 'the event');
    expect(got[0]?.payload).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(got[0]?.payload as Uint8Array).equals(envelope)).toBe(true);
    expect(got[0]?.id).toBe('ce-bytes');
  });

  it('a structured CloudEvent whose data_base64 is not base64 is dead-lettered as a DecodeError; its neighbours arrive', async () => {
    const bus = await s.bus();
    const topic = s.topic('cebase64');
    const group = s.group();
    const got = recorder();
    await bus.subscribe(topic, got.handler, { group, retry: { maxAttempts: 3, initialDelayMs: 20 } });
    const dead = recorder();
    await bus.subscribeDeadLetters(topic, group, dead.handler);
    await s.settle();
    const event = (id: string, extra: Record<string, unknown>) =>
      Buffer.from(JSON.stringify({ specversion: '1.0', id, source: '/conformance', type: 'test.event', ...extra }));
    const structured = 'application/cloudevents+json';
    await publishAs(bus, topic, structured, event('bad-base64', { data_base64: '!!!not base64!!!' }));
    // Jackson writes every field: a null data_base64 is no binary data, not an error.
    await publishAs(bus, topic, structured, event('null-base64', { data_base64: null, data: { n: 1 } }));
    // Extension values are strings, numbers or booleans; an array 100,000 deep is no attribute (it was kept as
    // JSON.stringify's RangeError, and every dead-letter reader failed on it for good).
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const nested = Buffer.from(
      `{"specversion":"1.0","id":"deep","source":"/conformance","type":"test.event","deep":${deep},"data":2}`,
    );
    await publishAs(bus, topic, structured, nested);
    await publishAs(bus, topic, structured, event('good', { data_base64: Buffer.from([0, 255]).toString('base64') }));
    await s.waitFor(
      () => dead.messages.length >= 1 && got.messages.length >= 3,
      20_000,
      'one dead letter and three events',
    );
    expect(dead.messages.map((m) => m.deadLetter?.errorName)).toEqual(['DecodeError']);
    expect(dead.messages[0]?.deadLetter?.attempts).toBe(0);
    const byId = new Map(got.messages.map((m) => [m.cloudEvent?.id, m]));
    expect(byId.get('null-base64')?.payload).toEqual({ n: 1 });
    expect(byId.get('deep')?.payload).toBe(2);
    expect(byId.get('deep')?.cloudEvent?.extensions).toEqual({});
    expect([...((byId.get('good')?.payload as Uint8Array | undefined) ?? [])]).toEqual([0, 255]);
    expect(byId.has('bad-base64')).toBe(false);
  });
}
