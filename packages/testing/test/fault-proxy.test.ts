import net from 'node:net';
import { createFaultProxy, type FaultProxy, waitFor } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// An echo server stands in for a broker: what goes through the proxy comes back.
let echo: net.Server;
let echoPort: number;
beforeAll(async () => {
  echo = net.createServer((socket) => socket.on('error', () => undefined).pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
  echoPort = (echo.address() as net.AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => echo.close(() => resolve())));

function client(proxy: FaultProxy): Promise<{ socket: net.Socket; received: () => string; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    let data = '';
    let closed = false;
    const socket = net.connect(proxy.port, proxy.host, () =>
      resolve({ socket, received: () => data, closed: () => closed }),
    );
    socket.on('data', (chunk) => {
      data += chunk.toString();
    });
    socket.on('close', () => {
      closed = true;
    });
    socket.on('error', reject);
  });
}

describe('fault proxy', () => {
  it('forwards traffic both ways and keeps the URL parts', async () => {
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: echoPort } });
    try {
      const c = await client(proxy);
      c.socket.write('hello');
      await waitFor(() => c.received() === 'hello', 2_000, 'the echo');
      expect(proxy.connections).toBe(1);
      expect(proxy.url('amqp://u:p@broker:5672/vhost')).toBe(`amqp://u:p@127.0.0.1:${proxy.port}/vhost`);
      c.socket.destroy();
    } finally {
      await proxy.close();
    }
  });

  it('cutAll closes every open connection', async () => {
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: echoPort } });
    try {
      const c = await client(proxy);
      proxy.cutAll();
      await waitFor(() => c.closed(), 2_000, 'the cut');
      expect(proxy.connections).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  it('refuse rejects new connections for a while, then lets them through', async () => {
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: echoPort } });
    try {
      proxy.refuse(300);
      const refused = await client(proxy).then(
        (c) => new Promise<boolean>((resolve) => c.socket.on('close', () => resolve(true))),
        () => true,
      );
      expect(refused).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 350));
      const c = await client(proxy);
      c.socket.write('back');
      await waitFor(() => c.received() === 'back', 2_000, 'traffic after the refusal');
      c.socket.destroy();
    } finally {
      await proxy.close();
    }
  });

  it('blackhole drops traffic silently and latency delays it', async () => {
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: echoPort } });
    try {
      const c = await client(proxy);
      proxy.blackhole(true);
      c.socket.write('lost');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(c.received()).toBe('');
      expect(c.closed()).toBe(false);
      proxy.blackhole(false);
      proxy.setLatency(150);
      const t0 = Date.now();
      c.socket.write('slow');
      await waitFor(() => c.received() === 'slow', 2_000, 'the delayed echo');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      c.socket.destroy();
    } finally {
      await proxy.close();
    }
  });
});
