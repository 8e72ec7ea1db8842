import { type ClaimResult, ConfigError, type IdempotencyStore } from '@busbar/core';
import { redactUrl } from '@busbar/core/transport';
import { type ClientConfig, connectClient, createClient, type RedisClient, type TlsSettings } from './client.js';
import { toBusbarError } from './errors.js';
import { claimKey, releaseKey } from './scripts.js';

export interface RedisIdempotencyStoreOptions {
  /** `redis://` or `rediss://` URL of the Redis that keeps the keys. */
  readonly url: string;
  /** Prefix of the keys (`<prefix><group>:<message id>`). Default `busbar:idem:`. */
  readonly keyPrefix?: string;
  /** Password, when not in the URL (never logged or shown in errors). */
  readonly password?: string;
  /** The URL names a seed node of a Redis Cluster. */
  readonly cluster?: boolean;
  /** TLS settings as for the transport's `tls` option (PEM `ca`, `cert`, `key`; the key is a secret). */
  readonly tls?: TlsSettings;
  readonly connectTimeoutMs?: number;
}

/**
 * An idempotency store on Redis, usable with any transport. A claim is a key
 * set to `claimed` with a lease (PX) by a Lua script that first checks for
 * `done` or a live claim, so two consumers racing on one key never both win;
 * `complete` overwrites it with `done` for the TTL. Each key stands alone, so
 * it works on a Redis Cluster. Keep the Redis persistent (AOF) if a restart
 * must not forget processed messages.
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  readonly #client: RedisClient;
  readonly #config: ClientConfig;
  readonly #prefix: string;
  readonly #secrets: string[];
  #connecting: Promise<void> | undefined;

  constructor(options: RedisIdempotencyStoreOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new ConfigError(`RedisIdempotencyStore: '${redactUrl(options.url)}' is not a valid URL`);
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      throw new ConfigError(`RedisIdempotencyStore: expected a redis:// or rediss:// URL, got '${redactUrl(url)}'`);
    }
    this.#secrets = [
      options.password ?? '',
      url.password ? decodeURIComponent(url.password) : '',
      url.password,
      options.tls?.key ?? '',
    ].filter(Boolean);
    this.#prefix = options.keyPrefix ?? 'busbar:idem:';
    this.#config = {
      url,
      password: options.password,
      cluster: options.cluster ?? false,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      connectionName: 'busbar-idempotency',
      tls: options.tls,
    };
    this.#client = createClient(this.#config, false);
    this.#client.on('error', () => undefined); // surfaced (sanitized) by the failing calls
  }

  #ready(): Promise<void> {
    this.#connecting ??= connectClient(this.#client, this.#config, this.#secrets).catch((error: unknown) => {
      this.#connecting = undefined;
      throw error;
    });
    return this.#connecting;
  }

  async claim(key: string, leaseMs: number): Promise<ClaimResult> {
    await this.#ready();
    try {
      return (await claimKey.run(
        this.#client,
        [this.#prefix + key],
        [Math.max(1, Math.round(leaseMs))],
      )) as ClaimResult;
    } catch (error) {
      throw toBusbarError(error, { what: 'Idempotency claim', op: 'consume', secrets: this.#secrets });
    }
  }

  async complete(key: string, ttlMs: number): Promise<void> {
    await this.#ready();
    try {
      await this.#client.call('SET', this.#prefix + key, 'done', 'PX', Math.max(1, Math.round(ttlMs)));
    } catch (error) {
      throw toBusbarError(error, { what: 'Idempotency complete', op: 'consume', secrets: this.#secrets });
    }
  }

  async release(key: string): Promise<void> {
    await this.#ready();
    try {
      await releaseKey.run(this.#client, [this.#prefix + key], []);
    } catch (error) {
      throw toBusbarError(error, { what: 'Idempotency release', op: 'consume', secrets: this.#secrets });
    }
  }

  /** Closes the store's connection. */
  async close(): Promise<void> {
    if (!this.#connecting) {
      this.#client.disconnect();
      return;
    }
    await this.#client.quit().catch(() => this.#client.disconnect());
  }
}
