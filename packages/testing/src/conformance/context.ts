import type { Bus, Capabilities, Logger, Message } from '@busbar/core';
import { afterEach } from 'vitest';
import { uniqueName } from '../brokers.js';
import { sleep, waitFor } from '../wait.js';

/** Options a test may override when opening a bus (passed through to `connect`). */
export interface BusOverrides {
  closeTimeoutMs?: number;
  maxPayloadBytes?: number;
  connectTimeoutMs?: number;
  publishTimeoutMs?: number;
  /** Another address of the same broker (a fault proxy in front of it). */
  url?: string;
  logger?: Logger;
}

/** The sections of the suite, in the order they run; `sections` in the options picks some of them. */
export const SECTIONS = [
  'capabilities',
  'delivery',
  'ordering',
  'wildcards',
  'failures',
  'lifecycle',
  'conventions',
  'delayed publish',
  'middleware',
  'batch handlers',
  'request/reply',
  'durable groups',
  'bad input',
  'credentials',
] as const;

export type ConformanceSection = (typeof SECTIONS)[number];

export interface ConformanceOptions {
  /** Opens a new bus on the transport under test (one connection each); spread `overrides` into `connect()`. */
  connect: (overrides?: BusOverrides) => Promise<Bus>;
  /** What the transport claims; decides which tests apply. Must equal `bus.capabilities`. */
  capabilities: Capabilities;
  /** Multiplies every wait, for slow brokers (Kafka group joins). Default 1. */
  timeoutScale?: number;
  /** Time a new subscription needs before it reliably receives (e.g. a Kafka rebalance). Default 0. */
  settleMs?: number;
  /** A URL with a wrong password (the canary `busbar-canary-secret`) that must fail to connect without showing it. */
  badCredentialsUrl?: string;
  /**
   * Makes the broker refuse every write to `topic` (the suite passes a dead-letter topic) until the
   * returned function is called: whatever makes this broker say no (a full or wrong-typed key, a topic
   * whose size limit is too small, an ACL, a subject no stream covers). The bad-input section checks that
   * a failing dead-letter write backs off instead of looping, and that the message gets there once the
   * broker takes writes again.
   */
  refuseWrites: (topic: string) => Promise<() => Promise<void>>;
  /**
   * The broker's URL, for transports a TCP proxy can stand in front of (not Kafka: its metadata sends clients to
   * the advertised address). The credentials section then connects through a proxy that accepts TCP and never
   * answers, as a broker at its file-descriptor limit or a half-dead network does.
   */
  proxyableUrl?: string;
  /**
   * This transport's URL for another host and port (credentials may be left out). The credentials section then
   * points it at a local server that answers like an HTTP server or with random bytes, and expects a fast typed
   * failure that is not retryable and says the server does not speak the protocol, nothing left behind, and a
   * working bus afterwards. Default: `proxyableUrl` with its host and port replaced.
   */
  wrongPeerUrl?: (host: string, port: number) => string;
  /** How many random publishes the fuzz test makes. Default 100. */
  fuzzRuns?: number;
  /**
   * Run only these sections (default: all that the capabilities allow), e.g. the version-sensitive ones
   * against a second broker version. A section the capabilities rule out is not run even when named.
   */
  sections?: readonly ConformanceSection[];
  /** Requests in flight at once in the request/reply load test. Default 10,000; lower it for a slow broker. */
  requestLoad?: number;
}

export const CANARY = 'busbar-canary-secret';

/** Per-test helpers: buses opened through it are closed after each test. */
export class Suite {
  readonly options: ConformanceOptions;
  readonly #open = new Set<Bus>();

  constructor(options: ConformanceOptions) {
    this.options = options;
    afterEach(async () => {
      const buses = [...this.#open];
      this.#open.clear();
      await Promise.all(buses.map((bus) => bus.close().catch(() => undefined)));
    });
  }

  get caps(): Capabilities {
    return this.options.capabilities;
  }

  /** A wait bound scaled for the broker. */
  ms(base: number): number {
    return base * (this.options.timeoutScale ?? 1);
  }

  async bus(overrides?: BusOverrides): Promise<Bus> {
    const bus = await this.options.connect(overrides);
    this.#open.add(bus);
    return bus;
  }

  /** Lets new subscriptions join before anything is published. */
  settle(): Promise<void> {
    return sleep(this.options.settleMs ?? 0);
  }

  topic(label = 'topic'): string {
    return `conf.${label}.${uniqueName('t')}`;
  }

  group(label = 'g'): string {
    return uniqueName(label);
  }

  waitFor(condition: () => boolean, base: number, what: string): Promise<void> {
    return waitFor(condition, this.ms(base), what);
  }
}

export interface Received<T> {
  readonly messages: Message<T>[];
  readonly handler: (message: Message<T>) => Promise<void>;
}

/** A handler that records every message it sees. */
export function recorder<T>(): Received<T> {
  const messages: Message<T>[] = [];
  return {
    messages,
    handler: async (message) => {
      messages.push(message);
    },
  };
}

export function uniqueIds(messages: readonly Message<unknown>[]): Set<string> {
  return new Set(messages.map((m) => m.id));
}
