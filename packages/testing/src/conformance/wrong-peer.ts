import net from 'node:net';
import { inspect } from 'node:util';
import { BusbarError } from '@busbar/core';
import { expect, it } from 'vitest';
import { errorTexts } from '../secrets.js';
import { watchUncaught } from '../uncaught.js';
import { waitFor } from '../wait.js';
import { CANARY, recorder, type Suite } from './context.js';

/**
 * What a wrong peer says first, as soon as it accepts: a NATS client waits for the server to speak, so a peer
 * that waits for the client would test nothing there.
 */
const ANSWERS: Readonly<Record<string, Buffer>> = {
  'an HTTP response': Buffer.from(
    'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request',
  ),
  // Bytes no transport here can take for the start of an answer: no RESP type byte, an MQTT packet type (15)
  // with flag bits it forbids, an AMQP frame far over any size limit, a negative Kafka frame size (which
  // kafkajs once threw on from a socket handler, killing the process), a first line that is no NATS INFO.
  'random bytes': Buffer.from([0xff, 0xfb, 0x07, 0xa3, 0x5c, 0xe1, 0x90, 0x2e, 0x13, 0x88, 0x6d, 0x0d, 0x0a]),
};

export interface WrongPeer {
  readonly port: number;
  /** Sockets of this server that are still open: they count among the process's own. */
  open(): number;
  close(): Promise<void>;
}

/**
 * A local server that answers every connection with `answer` as soon as it accepts (nothing: says nothing), then
 * hangs up or keeps the connection silent: a port of another protocol, for connect tests.
 */
export async function createWrongPeer(answer: Buffer | string | undefined, hangUp: boolean): Promise<WrongPeer> {
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    open.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => open.delete(socket));
    if (answer !== undefined) socket.write(answer);
    if (hangUp) socket.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    open: () => open.size,
    close: () => {
      for (const socket of open) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const count = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length;

/**
 * The first thing new users get wrong: a URL whose port is another service's. `urlAt` makes this transport's URL
 * for a host and port. connect() must fail typed and at once (the peer will not learn the protocol: not
 * retryable, not retried until the connect timeout), say that the server does not speak the protocol, never
 * show the password, leave no socket or timer behind, and a connect to the right URL must work afterwards.
 */
export function wrongPeerTests(s: Suite, urlAt: (host: string, port: number) => string): void {
  for (const [name, answer] of Object.entries(ANSWERS)) {
    for (const hangUp of [false, true]) {
      const then = hangUp ? 'hangs up' : 'stays silent';
      it(`a port that answers with ${name} and ${then} fails connect at once, typed and not retryable; the right URL works afterwards`, async () => {
        const peer = await createWrongPeer(answer, hangUp);
        const unhandled = watchUncaught();
        try {
          const url = new URL(urlAt('127.0.0.1', peer.port));
          url.username ||= 'busbar';
          url.password = CANARY;
          const sockets = count('TCPSocketWrap');
          const timers = count('Timeout');
          const started = Date.now();
          const error = await s.bus({ url: url.toString(), connectTimeoutMs: 6_000 }).then(
            () => new Error('connected to a server that does not speak the protocol'),
            (e: unknown) => e,
          );
          const ms = Date.now() - started;
          expect(BusbarError.is(error), inspect(error)).toBe(true);
          const failure = error as BusbarError;
          expect(['BUSBAR_CONNECTION', 'BUSBAR_CONFIG'], failure.message).toContain(failure.code);
          expect(failure.retryable, failure.message).toBe(false);
          // Well within the 6 s connect timeout: given up at the first answer, not reconnected until the timeout.
          expect(ms, failure.message).toBeLessThan(2_500);
          expect(failure.message).toMatch(/does not speak/);
          expect(errorTexts(failure)).not.toContain(CANARY);
          // Nothing of the failed connect keeps the process alive (the wrong peer's own open sockets aside).
          const left = () => ({
            sockets: Math.max(0, count('TCPSocketWrap') - peer.open() - sockets),
            timers: Math.max(0, count('Timeout') - timers),
          });
          const gone = () => left().sockets === 0 && left().timers === 0;
          await waitFor(gone, s.ms(1_000), 'the failed connect to let go').catch(() => undefined);
          expect(left(), 'sockets and timers the failed connect left behind').toEqual({ sockets: 0, timers: 0 });
        } finally {
          await peer.close();
          unhandled.stop();
        }
        expect(unhandled.errors.map((e) => inspect(e))).toEqual([]);
        // The same process connects to the right URL and works.
        const bus = await s.bus();
        const topic = s.topic('rightpeer');
        const got = recorder<string>();
        await bus.subscribe(topic, got.handler, { group: s.group() });
        await s.settle();
        await bus.publish(topic, 'right');
        await s.waitFor(() => got.messages.length === 1, 10_000, 'the message on the right URL');
      });
    }
  }
}
