import net from 'node:net';

export interface FaultProxyOptions {
  /** Where to forward: the real broker. */
  target: { host: string; port: number };
  /** Listen port; 0 (default) picks a free one. */
  port?: number;
  host?: string;
}

/**
 * A TCP proxy in front of a broker for fault tests that must not disturb the
 * shared broker: point a client at `proxy.port`, then cut, refuse, delay or
 * blackhole its connections.
 */
export interface FaultProxy {
  readonly port: number;
  readonly host: string;
  /** `scheme://host:port` of the proxy, keeping the user info and path of `url`. */
  url(url: string): string;
  /** Destroys every open connection (both sides), like a network cut. */
  cutAll(): void;
  /** Refuses (resets) new connections for `ms`, cutting the open ones too. */
  refuse(ms: number): void;
  /** Adds `ms` of latency to each chunk in both directions. */
  setLatency(ms: number): void;
  /** Keeps connections open but silently drops all traffic (a dead peer that never answers). */
  blackhole(on: boolean): void;
  readonly connections: number;
  close(): Promise<void>;
}

export async function createFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const sockets = new Set<net.Socket>();
  let refuseUntil = 0;
  let latency = 0;
  let blackholed = false;

  const forward = (from: net.Socket, to: net.Socket) => {
    from.on('data', (chunk) => {
      if (blackholed) return;
      if (latency > 0) {
        from.pause();
        setTimeout(() => {
          if (!to.destroyed) to.write(chunk);
          from.resume();
        }, latency);
      } else if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
  };

  const server = net.createServer((client) => {
    if (Date.now() < refuseUntil) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(options.target.port, options.target.host);
    sockets.add(client);
    sockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    forward(client, upstream);
    forward(upstream, client);
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  const cutAll = () => {
    for (const socket of sockets) socket.resetAndDestroy();
    sockets.clear();
  };

  return {
    port,
    host,
    url(url: string) {
      const parsed = new URL(url);
      parsed.hostname = host;
      parsed.port = String(port);
      return parsed.toString().replace(/\/$/, '');
    },
    cutAll,
    refuse(ms: number) {
      refuseUntil = Date.now() + ms;
      cutAll();
    },
    setLatency(ms: number) {
      latency = ms;
    },
    blackhole(on: boolean) {
      blackholed = on;
    },
    get connections() {
      return sockets.size / 2;
    },
    close() {
      cutAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
