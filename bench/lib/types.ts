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

/** How the batch consume test forms batches (busbar's `subscribeBatch` `batch` option). */
export interface BatchShape {
  /** Messages per batch at most. */
  readonly maxSize: number;
  /** A partial batch is handed over this long after its first message. */
  readonly maxWaitMs: number;
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
  /**
   * Drains like `consume`, handing `onBatch` arrays of up to `batch.maxSize` messages, acked per batch where the
   * client can. Absent where the client has no batch consumption (MQTT): the batch test then runs `consume`.
   */
  consumeBatch?(
    target: Target,
    count: number,
    batch: BatchShape,
    onBatch: (bodies: readonly Uint8Array[]) => void,
  ): Promise<Running>;
  /** Request/reply over the broker's own mechanism; undefined where the side has none (the request tests skip). */
  readonly requestReply?: RequestReplySide;
  close(): Promise<void>;
}

/**
 * Round trips on one side. A responder answers every request with the JSON string REPLY (lib/util.ts), as
 * busbar's responders reply in JSON; the requester resolves with the decoded reply, which the harness checks.
 */
export interface RequestReplySide {
  /** A new request topic and responder group (nothing on the broker yet: no stream or queue that would capture requests). */
  fresh(): Promise<Target>;
  /** Deletes what serving and requesting on `target` left on the broker. */
  drop(target: Target): Promise<void>;
  /** Starts a responder of `target.group`; resolves once requests sent from now on reach it. */
  serve(target: Target): Promise<{ close(): Promise<void> }>;
  /** One round trip: sends `payload` as a request and resolves with the decoded reply. */
  request(target: Target, payload: Buffer): Promise<unknown>;
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
  /** Round trips per "request, concurrent" block (default `defaultMessages`): a round trip is two messages. */
  readonly requestMessages?: number;
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
  /**
   * Further raw references, each compared with busbar in its own interleaved rounds and reported as its own
   * row (`raw (<label>)`): another client of the same broker (@platformatic/kafka), or another way of using the
   * same client. Only the scenarios in `scenarios` run against it.
   */
  references?(): Promise<readonly Reference[]>;
  busbar(): Promise<Side>;
  /** Stops anything the bench started for this broker (a private broker). */
  shutdown?(): Promise<void>;
}

export interface Reference {
  readonly side: Side;
  /** Scenarios this reference takes part in (the others are not its strength or not written). */
  readonly scenarios: readonly string[];
}
