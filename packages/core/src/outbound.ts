import { BusbarError } from './errors.js';
import { channels } from './events.js';
import { assertTopicName } from './names.js';
import { checkPublishOptions, encodeRecord, PUBLISH_OPTION_KEYS, type PublishOptions } from './publish.js';
import { sanitizeError } from './redact.js';
import { validate } from './schema.js';
import type { Topic } from './topic.js';
import type { OutgoingRecord, Transport } from './transport/spi.js';
import { abortable } from './transport/util.js';

/** What a publish whose signal fired while the broker had it rejects with. */
export const ABORTED_WAITING = 'Publish aborted while waiting for the broker: it may or may not have the message(s)';
export const ABORTED_VALIDATING = 'Publish aborted while its schema validated: nothing was sent';

/**
 * The way out of a bus: topic checks (cached), validation, encoding and the size limit, and the hand-over to
 * the transport inside the `busbar:publish` tracing channel. Errors leave it typed and redacted.
 */
export class Outbound {
  readonly #transport: Transport;
  readonly #system: string;
  readonly #maxPayloadBytes: number;
  readonly #secrets: readonly string[];
  readonly #validTopics = new Set<string>();

  constructor(transport: Transport, system: string, maxPayloadBytes: number, secrets: readonly string[]) {
    this.#transport = transport;
    this.#system = system;
    this.#maxPayloadBytes = maxPayloadBytes;
    this.#secrets = secrets;
  }

  /**
   * Validates and encodes one message. Synchronous unless the schema validates
   * asynchronously: most publishes then cost no extra promise (measured: an
   * await per message was a visible share of core's publish time).
   */
  record<T>(
    def: Topic<T>,
    payload: T,
    options: PublishOptions | undefined,
    keys: ReadonlySet<string> = PUBLISH_OPTION_KEYS,
  ): OutgoingRecord | Promise<OutgoingRecord> {
    this.checkTopic(def.name, 'publish');
    if (options !== undefined) checkPublishOptions(options, keys);
    if (!def.schema) return this.#encode(def, payload, options);
    const value = validate(def.schema, payload, `Payload for '${def.name}'`);
    if (!(value instanceof Promise)) return this.#encode(def, value, options);
    // The publish's signal stops the wait for a slow schema too: nothing is sent once it fired.
    return abortable(
      value.then((v) => this.#encode(def, v, options)),
      options?.signal,
      ABORTED_VALIDATING,
    );
  }

  #encode<T>(def: Topic<T>, value: T, options: PublishOptions | undefined): OutgoingRecord {
    const limit = Math.min(this.#maxPayloadBytes, this.#transport.maxPayloadBytes);
    return encodeRecord(def, value, options, limit, this.#transport.cloudEventsPrefix ?? 'ce-');
  }

  /**
   * One record, resolved with its id: the driver's promise and one reaction, nothing else, when nobody traces
   * (`bus.publish` awaited `send` in an async frame: two promises more per message).
   */
  sendOne(topic: string, record: OutgoingRecord, signal: AbortSignal | undefined): Promise<string> {
    const id = record.id;
    let sent: Promise<string>;
    if (channels.publish.hasSubscribers) sent = this.send(topic, [record]).then(() => id);
    else {
      try {
        sent = this.#transport.publish([record]).then(() => id, this.#rethrow);
      } catch (error) {
        // A driver that throws instead of rejecting.
        return Promise.reject(this.#clean(error));
      }
    }
    return signal === undefined ? sent : abortable(sent, signal, ABORTED_WAITING);
  }

  /** Not async: one promise less per publish when nobody traces (the caller awaits the driver's). */
  send(topic: string, records: OutgoingRecord[]): Promise<void> {
    try {
      if (!channels.publish.hasSubscribers) return this.#transport.publish(records).catch(this.#rethrow);
      // Cleaned inside the traced call: the channel's `error` event hands subscribers (a tracer recording the
      // exception on a span, exported elsewhere) the same error as the caller gets, not the native one.
      const publish = () => {
        try {
          return this.#transport.publish(records).catch(this.#rethrow);
        } catch (error) {
          return Promise.reject(this.#clean(error));
        }
      };
      return channels.publish.tracePromise(publish, {
        system: this.#system,
        topic,
        messages: records.map((r) => ({ id: r.id, key: r.key, headers: r.headers as Record<string, string> })),
      });
    } catch (error) {
      // A driver that throws instead of rejecting.
      return Promise.reject(this.#clean(error));
    }
  }

  readonly #rethrow = (error: unknown): never => {
    throw this.#clean(error);
  };

  checkTopic(name: string, use: 'publish' | 'subscribe'): void {
    const cacheKey = use === 'publish' ? name : `?${name}`;
    if (this.#validTopics.has(cacheKey)) return;
    assertTopicName(name, use);
    this.#transport.validateTopic?.(name, use);
    if (this.#validTopics.size < 10_000) this.#validTopics.add(cacheKey);
  }

  #clean(error: unknown): Error {
    if (BusbarError.is(error)) return error;
    return sanitizeError(error, this.#secrets);
  }
}
