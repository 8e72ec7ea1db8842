import { ConfigError } from '@busbar/core';
import type { TransportContext } from '@busbar/core/transport';
import type { ClientConfig, SentinelSettings, TlsSettings } from './client.js';
import type { RedisOptions } from './options.js';

/** Sentinel's default port. */
const SENTINEL_PORT = 26379;

/** The client settings of a bus, from its URL and options, and every string never to show (the TLS key too). */
export function clientConfig(ctx: TransportContext<RedisOptions>): { config: ClientConfig; secrets: string[] } {
  const o = ctx.options;
  const { url } = ctx;
  const sentinelScheme = url.protocol === 'redis+sentinel:' || url.protocol === 'rediss+sentinel:';
  const tlsScheme = url.protocol === 'rediss:' || url.protocol === 'rediss+sentinel:';
  const tls: TlsSettings | undefined =
    typeof o.tls === 'object' ? o.tls : o.tls === true || (o.tls === undefined && tlsScheme) ? {} : undefined;
  if (o.tls === false && tlsScheme) {
    throw new ConfigError(`Invalid connect options: tls: a ${url.protocol}// URL always uses TLS`);
  }
  if (o.waitReplicas > 0 && (o.cluster || o.clusterNodes)) {
    throw new ConfigError(
      'Invalid connect options: waitReplicas: not with a Redis Cluster (WAIT counts the replicas of one node)',
    );
  }
  if (!sentinelScheme && url.pathname !== '' && url.pathname !== '/') {
    // Read as Number() it fell back to database 0 for anything else: a typo connected to the wrong data.
    const db = /^\/(\d{1,5})$/.exec(url.pathname)?.[1];
    if (db === undefined) {
      throw new ConfigError('Invalid connect options: url: the path names a database number (redis://host:6379/2)');
    }
    if (db !== '0' && (o.cluster || o.clusterNodes)) {
      throw new ConfigError('Invalid connect options: url: a Redis Cluster has database 0 only');
    }
  }
  let sentinel: SentinelSettings | undefined;
  if (sentinelScheme) {
    if (o.cluster || o.clusterNodes) {
      throw new ConfigError('Invalid connect options: cluster: a redis+sentinel:// URL names sentinels, not a cluster');
    }
    const name = decodeURIComponent(url.pathname.slice(1));
    if (!/^[^\s/]{1,200}$/.test(name)) {
      throw new ConfigError(
        'Invalid connect options: url: expected redis+sentinel://host:port[,host:port]/<master name>',
      );
    }
    const hosts = ctx.hosts.length > 0 ? ctx.hosts : [url.host];
    const nodes = hosts.map((h) => {
      const at = h.lastIndexOf(':');
      const bare = at > h.lastIndexOf(']') ? h.slice(0, at) : h;
      const port = at > h.lastIndexOf(']') ? Number(h.slice(at + 1)) : SENTINEL_PORT;
      return { host: bare.replace(/^\[|\]$/g, ''), port };
    });
    sentinel = { name, nodes, username: o.sentinelUsername, password: o.sentinelPassword };
  }
  const config: ClientConfig = {
    url,
    password: o.password,
    cluster: o.cluster,
    clusterNodes: o.clusterNodes,
    connectTimeoutMs: ctx.bus.connectTimeoutMs,
    connectionName: ctx.bus.name.replace(/\s/g, '_'),
    tls,
    sentinel,
  };
  const secrets = [...ctx.secrets];
  if (tls?.key !== undefined) secrets.push(tls.key);
  return { config, secrets };
}
