import net from 'node:net';
import { freePort } from '@busbar/testing';
import { describe, expect, it } from 'vitest';

describe('freePort', () => {
  it('gives a loopback port a private broker can listen on', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    expect((server.address() as net.AddressInfo).port).toBe(port);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
