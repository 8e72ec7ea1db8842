/**
 * What one side of the comparison (the raw client, or busbar on that broker)
 * must offer. Every method works on a fresh destination from `fresh()`, so
 * blocks never see each other's messages ("purge between blocks").
 */
export interface Target {
  /** busbar topic name (raw sides map it to their native name the same way the driver does). */
  readonly topic: string;
  /** Consumer group name. */
  readonly group: string;
}

export interface Running {
  /** Resolves when `count` messages have been handled (and handed back for acking). */
  readonly done: Promise<void>;
  /** Stops the consumer (acks flushed). */
  close(): Promise<void>;
}

export interface Side {
  readonly label: string;
  /**
   * A new destination whose group exists already, so that messages published
   * from now on are kept for it (the backlog the consume test drains).
   */
  fresh(): Promise<Target>;
  /** Deletes what `fresh()` and the test created on the broker. */
  drop(target: Target): Promise<void>;
  /** Publishes `count` copies of `payload` in batches (publishBatch / the client's batch API); resolves once all are confirmed. */
  publishBatch(target: Target, count: number, payload: Buffer): Promise<void>;
  /** Publishes `count` messages as individual concurrent calls, with the side's in-flight window; resolves once all are confirmed. */
  publishConcurrent(target: Target, count: number, payload: Buffer): Promise<void>;
  /** Publishes one message and resolves when it is confirmed (used at a fixed rate by the latency test). */
  publishOne(target: Target, payload: Buffer): Promise<void>;
  /** Subscribes the group; resolves once it is live. `onBody` runs for every message before it is acked. */
  consume(target: Target, count: number, onBody: (body: Uint8Array) => void): Promise<Running>;
  close(): Promise<void>;
}

export interface BrokerBench {
  readonly name: string;
  /** Messages per block by default (sized to the broker's speed so a block lasts ~0.5 s). */
  readonly defaultMessages: number;
  /**
   * Messages per consume block, when a backlog of `defaultMessages` fits in one or two fetches: the raw
   * side then times a loop over records already decoded, not consumption (Kafka: 15,000 small records
   * come in about three fetches).
   */
  readonly consumeMessages?: number;
  /**
   * True when a group keeps messages published while no member is connected,
   * so consume can drain a prepared backlog. False (MQTT shared subscriptions):
   * consume is measured end to end, with the publisher running at the same time.
   */
  readonly backlog: boolean;
  available(): Promise<boolean>;
  /** Broker version text for RESULTS.md. */
  version(): Promise<string>;
  /** The raw client side; undefined for memory:// (busbar only). */
  raw?(): Promise<Side>;
  busbar(): Promise<Side>;
  /** Stops anything the bench started for this broker (a private broker). */
  shutdown?(): Promise<void>;
}
