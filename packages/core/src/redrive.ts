import { type Codec, jsonCodec } from './codec.js';
import { redriveHeaders } from './dead-letter.js';
import type { Logger } from './logger.js';
import type { HandlerContext, Message } from './message.js';
import { Context, HOLD, type Subscription } from './subscription/index.js';
import { defineTopic, type Topic } from './topic.js';
import { HEADER } from './transport/headers.js';
import type { Transport } from './transport/spi.js';

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
  /** Only re-drive dead letters this returns true for; the others stay dead. */
  filter?: (message: Message<unknown>) => boolean;
}

export interface RedriveParts {
  readonly transport: Transport;
  readonly logger: Logger;
  /** Subscribes the re-drive handler to the dead-letter topic as the reader group (concurrency 1). */
  readonly subscribe: (
    handler: (message: Message<unknown>, context: HandlerContext) => unknown,
  ) => Promise<Subscription>;
}

/**
 * Moves dead letters back to their topic, as a subscription of the dead-letter reader group with its own
 * handler over the ordinary pipeline: a moved dead letter is acked only after its re-publish is confirmed; one
 * that must stay (over the limit, filtered out, dead again since the re-drive began, or a failed re-publish)
 * is held unsettled and released when the re-drive ends, so it neither comes straight back nor gets lost.
 */
export async function redrive(parts: RedriveParts, fallbackTopic: string, options: RedriveOptions): Promise<number> {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const idleMs = options.idleMs ?? 1_000;
  const startedAt = Date.now();
  let count = 0;
  let last = startedAt;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const move = async (message: Message<unknown>, context: HandlerContext): Promise<unknown> => {
    last = Date.now();
    const d = Context.delivery(context);
    if (d === undefined || count >= limit) return HOLD;
    // Dead letters that failed again after this re-drive began stay dead: no loop on a message that keeps failing.
    if ((message.deadLetter?.lastFailureAt.getTime() ?? 0) >= startedAt) return HOLD;
    if (options.filter && !options.filter(message)) return HOLD;
    try {
      await parts.transport.publish([
        {
          topic: d.headers[HEADER.dlTopic] ?? fallbackTopic,
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
      return HOLD;
    }
    count++;
    if (count >= limit) finish();
    return undefined;
  };
  const sub = await parts.subscribe(move);
  const timer = setInterval(
    () => {
      if (Date.now() - last >= idleMs) finish();
    },
    Math.max(10, Math.min(idleMs / 4, 250)),
  );
  await done;
  clearInterval(timer);
  await sub.close();
  return count;
}
