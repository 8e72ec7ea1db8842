import { type Codec, jsonCodec } from './codec.js';
import { redriveHeaders } from './dead-letter.js';
import { BusbarError } from './errors.js';
import type { Logger } from './logger.js';
import type { HandlerContext, Message } from './message.js';
import { isPattern, topicMatches } from './names.js';
import { MAX_TIMER_MS } from './options.js';
import { Context, HOLD, type Subscription } from './subscription/index.js';
import { defineTopic, type Topic } from './topic.js';
import { HEADER } from './transport/headers.js';
import type { Delivery, Transport } from './transport/spi.js';

/**
 * The topic a dead-letter reader subscribes with: on the default JSON codec the content type rules already
 * hand an unreadable body over as bytes; a custom codec is wrapped so that a body it cannot read is bytes too.
 */
export function deadLetterReaderTopic<T>(def: Topic<T>, name: string): Topic<T | Uint8Array> {
  if (def.codec === (jsonCodec as Codec<unknown>)) return defineTopic<T | Uint8Array>(name);
  return defineTopic<T | Uint8Array>(name, undefined, {
    codec: {
      contentType: def.codec.contentType,
      encode: (value) => def.codec.encode(value as T),
      decode: (bytes) => {
        try {
          return def.codec.decode(bytes);
        } catch {
          return bytes;
        }
      },
    },
  });
}

export interface RedriveOptions {
  /** Stop after this many messages. Default: all. */
  limit?: number;
  /** Stop when no dead letter arrived for this long. Default 1000 ms. */
  idleMs?: number;
  /** Only re-drive dead letters this returns true for; the others stay dead. A throw ends the re-drive: it rejects with it. */
  filter?: (message: Message<unknown>) => boolean;
  /** Re-publish at most this many per second (a consumer that just recovered is not flooded). Default: no limit. */
  ratePerSecond?: number;
  /** Called after each dead letter moved, with the count so far. A throw ends the re-drive: it rejects with it. */
  onProgress?: (moved: number) => void;
  /** Ends the re-drive early (Ctrl-C): the dead letter in hand finishes, what moved stays moved, the rest stays dead. */
  signal?: AbortSignal;
}

export interface DeadLetterWalkOptions {
  /** Stop after this many dead letters were visited. Default: all. */
  limit?: number;
  /** Stop when no dead letter arrived for this long. Default 1000 ms. */
  idleMs?: number;
  /** Only dead letters this returns true for; the others are left as they are. A throw ends the call: it rejects with it. */
  filter?: (message: Message<unknown>) => boolean;
  /** Ends the walk early, as if the queue had gone idle: it resolves with what it saw or did so far. */
  signal?: AbortSignal;
}

export interface RedriveParts {
  readonly transport: Transport;
  readonly logger: Logger;
  /** Subscribes the handler to the dead-letter topic as the reader group (concurrency 1). */
  readonly subscribe: (
    handler: (message: Message<unknown>, context: HandlerContext) => unknown,
  ) => Promise<Subscription>;
}

/**
 * What a walk does with one dead letter: done with it (acked), or leave it (released when the walk ends).
 * `stop(error)` ends the walk, which then rejects with `error` (a user's callback threw).
 */
type Visit = (
  message: Message<unknown>,
  delivery: Delivery,
  stop: (error: unknown) => void,
) => Promise<'done' | 'leave'>;

/**
 * Walks the dead letters that exist when it starts, as a subscription of the dead-letter reader group with its
 * own handler over the ordinary pipeline. A dead letter the visit is done with is acked; one it leaves (or one
 * over the limit, or dead again since the walk began) is held unsettled and released when the walk ends, so it
 * neither comes straight back nor gets lost. Resolves once `limit` visits happened or none arrived for `idleMs`.
 *
 * The walk's subscription has no retry and no dead letter, so a handler that threw would drop (ack) the dead
 * letter: a `filter` that threw deleted every dead letter it was asked about. Anything the user's callbacks or
 * the visit throw ends the walk instead: the dead letter in hand is left where it is, and the walk rejects.
 */
async function walk(parts: RedriveParts, options: DeadLetterWalkOptions, visit: Visit): Promise<void> {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const idleMs = options.idleMs ?? 1_000;
  // Failures are stamped in whole milliseconds, so a dead letter stamped in the millisecond the walk starts in
  // may be older than the walk. Starting in the next one makes every stamp >= startedAt a failure since.
  const now = Date.now();
  while (Date.now() <= now) await new Promise((resolve) => setTimeout(resolve, 1));
  const startedAt = now + 1;
  let visited = 0;
  const seenIds = new Set<string>();
  let busy = 0;
  let last = startedAt;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let failed: { readonly error: unknown } | undefined;
  const stop = (error: unknown): void => {
    failed ??= { error };
    finish();
  };
  const handler = async (message: Message<unknown>, context: HandlerContext): Promise<unknown> => {
    last = Date.now();
    const d = Context.delivery(context);
    if (d === undefined || visited >= limit || failed !== undefined) return HOLD;
    // Dead letters that failed again after this walk began stay dead: no loop on a message that keeps failing.
    // Known by id (a re-drive keeps it) and, for the ones this walk has not seen, by a failure time since it
    // began that is not ahead of this clock: one stamped by a host whose clock runs fast was held for good, and
    // a re-drive right after the failures moved nothing.
    const failedAt = message.deadLetter?.lastFailureAt.getTime() ?? 0;
    if (seenIds.has(message.id) || (failedAt >= startedAt && failedAt <= Date.now())) return HOLD;
    if (options.filter) {
      let selected: boolean;
      try {
        selected = options.filter(message);
      } catch (error) {
        stop(error);
        return HOLD;
      }
      if (!selected) return HOLD;
    }
    visited++;
    seenIds.add(message.id);
    // A visit in progress (a re-publish waiting for a slow broker's confirm) is not idleness.
    busy++;
    let outcome: 'done' | 'leave';
    try {
      outcome = await visit(message, d, stop);
    } catch (error) {
      stop(error);
      return HOLD;
    } finally {
      busy--;
      last = Date.now();
    }
    if (visited >= limit) finish();
    return outcome === 'done' ? undefined : HOLD;
  };
  const sub = await parts.subscribe(handler);
  const onAbort = () => finish();
  if (options.signal?.aborted) finish();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let confirming = false;
  const timer = setInterval(
    () => {
      if (confirming || busy > 0 || Date.now() - last < idleMs) return;
      // A process that did not run for idleMs (a GC pause, a starved machine) sees this timer before the dead
      // letters waiting in its socket: let I/O run once, and end the walk only if none of them came.
      confirming = true;
      const seen = last;
      setImmediate(() => {
        confirming = false;
        if (last === seen && busy === 0) finish();
      });
    },
    Math.max(10, Math.min(idleMs / 4, 250)),
  );
  await done;
  clearInterval(timer);
  options.signal?.removeEventListener('abort', onAbort);
  await sub.close();
  if (failed !== undefined) throw failed.error;
}

/**
 * Resolves at `due` (ms since the epoch), at once when it has passed. The clock is read once: reading it
 * again for the timer's length could give a negative one (Node then warns on stderr and waits 1 ms).
 */
export function waitUntil(due: number): Promise<void> | undefined {
  const wait = due - Date.now();
  if (!(wait > 0)) return undefined;
  // A wait past Node's longest timer would fire at once (a tiny ratePerSecond): wait in steps instead.
  if (wait > MAX_TIMER_MS)
    return new Promise((resolve) => setTimeout(resolve, MAX_TIMER_MS)).then(() => waitUntil(due));
  return new Promise((resolve) => setTimeout(resolve, wait));
}

/**
 * A walk holds every dead letter it only looks at (unacked, released at its end), so its prefetch is how many
 * one walk can see: 100 made `peek` and a re-drive's dry run stop at about 100 while thousands waited.
 */
export const WALK_PREFETCH = 10_000;

/** Publish failures that are about the broker, not the record: a re-drive ends on them. */
const BROKER_DOWN = new Set(['BUSBAR_TIMEOUT', 'BUSBAR_CONNECTION', 'BUSBAR_CLOSED']);

/**
 * Moves dead letters back to their topic: a moved dead letter is acked only after its re-publish is confirmed;
 * one whose re-publish fails stays dead. Returns how many moved.
 */
export async function redrive(parts: RedriveParts, fallbackTopic: string, options: RedriveOptions): Promise<number> {
  let moved = 0;
  const startedAt = Date.now();
  await walk(parts, options, async (_message, d, stop) => {
    if (options.ratePerSecond !== undefined && options.ratePerSecond > 0) {
      await waitUntil(startedAt + (moved * 1_000) / options.ratePerSecond);
    }
    // The letter's own topic, when it is the one re-driven (or one its pattern covers: a wildcard group's
    // letters name the topic each came from). Any other is not taken from a header anyone could have written:
    // a letter claiming `payments.charge` in another topic's queue would be re-driven there.
    const target = d.headers[HEADER.dlTopic] ?? fallbackTopic;
    if (target !== fallbackTopic && !(isPattern(fallbackTopic) && topicMatches(fallbackTopic, target))) {
      parts.logger.error(`A dead letter of '${fallbackTopic}' names another topic; it stays dead`, {
        id: d.id,
        topic: target.slice(0, 200),
      });
      return 'leave';
    }
    try {
      await parts.transport.publish([
        {
          topic: target,
          id: d.id,
          key: d.key,
          headers: redriveHeaders(d.headers),
          body: d.body,
          contentType: d.contentType ?? 'application/json',
          timestamp: d.timestamp,
        },
      ]);
    } catch (error) {
      parts.logger.error('Re-driving a dead letter failed; it stays dead', { id: d.id, error });
      // The broker is gone or silent, not this one message refused: every next one would wait out its publish
      // timeout in turn (a re-drive of 60 ran for 15 minutes). End here; the rest stays dead.
      if (BusbarError.is(error) && BROKER_DOWN.has(error.code)) stop(error);
      return 'leave';
    }
    moved++;
    // Moved is moved: a throwing onProgress still acks this one, and ends the walk.
    try {
      options.onProgress?.(moved);
    } catch (error) {
      stop(error);
    }
    return 'done';
  });
  return moved;
}

/**
 * The dead letters as they are, without taking any off the queue (all are released when the walk ends): at most
 * WALK_PREFETCH on every transport (RabbitMQ hands no more unacked ones to one consumer; the others could, and a
 * peek holds all it has seen in memory).
 */
export async function peekDeadLetters(
  parts: RedriveParts,
  options: DeadLetterWalkOptions,
): Promise<Message<unknown>[]> {
  const seen: Message<unknown>[] = [];
  const limit = Math.min(options.limit ?? WALK_PREFETCH, WALK_PREFETCH);
  await walk(parts, { ...options, limit }, async (message) => {
    seen.push(message);
    return 'leave';
  });
  return seen;
}

/** Deletes dead letters (acks them): those `filter` selects, up to `limit`. Returns how many. */
export async function purgeDeadLetters(parts: RedriveParts, options: DeadLetterWalkOptions): Promise<number> {
  let purged = 0;
  await walk(parts, options, async () => {
    purged++;
    return 'done';
  });
  return purged;
}
