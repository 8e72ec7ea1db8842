import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { PendingReplies } from './lib/replies.js';
import type { RequestReplySide } from './lib/types.js';
import { REPLY_BYTES, REQUEST_PREFETCH, uniqueGroup, uniqueTopic } from './lib/util.js';

/** Both sides trim request and reply streams on every XADD, as busbar does (a stream nobody reads must not grow). */
const MAXLEN = 10_000;
const BLOCK_MS = 200;

type Entries = [Buffer, Buffer[]][];
type StreamReply = [Buffer, Entries][] | null;

const requestKey = (topic: string) => `rawbench:rr:{${topic}}`;

/**
 * The hand-written equivalent of busbar's Redis request/reply (packages/redis/src/requester.ts, responder.ts):
 * a request is an XADD to the topic's request stream with `reply-to` (the requester's reply stream) and
 * `correlation-id`; a responder group reads it with XREADGROUP COUNT <prefetch>, XADDs each reply to its
 * reply stream and acks the read with ONE XACK, all in one pipeline, without waiting before the next read;
 * the requester reads its reply stream with one blocking XREAD loop on its own connection and matches replies
 * by correlation id. Requests go out auto-pipelined on the shared connection; each has a timeout.
 */
export function rawRedisRequestReply(
  redis: Redis,
  blockingClient: () => Redis,
): RequestReplySide & { close(): Promise<void> } {
  const replyKey = `rawbench:rr:reply:{${randomUUID()}}`;
  const pending = new PendingReplies();
  let reader: Redis | undefined;
  let stopped = false;
  let loop: Promise<void> | undefined;

  const readReplies = async (r: Redis) => {
    let last = '0-0';
    while (!stopped) {
      const res = (await r
        .callBuffer('XREAD', 'COUNT', 1000, 'BLOCK', BLOCK_MS, 'STREAMS', replyKey, last)
        .catch(() => null)) as StreamReply;
      const entries = res?.[0]?.[1];
      if (!entries) continue;
      for (const [id, fields] of entries) {
        // Fields: correlation-id <id> body <json>
        pending.settle((fields[1] as Buffer).toString(), fields[3] as Buffer);
        last = id.toString();
      }
    }
  };

  return {
    fresh: async () => ({ topic: uniqueTopic(), group: uniqueGroup() }),
    async drop(target) {
      await redis.del(requestKey(target.topic));
    },
    async serve(target) {
      const stream = requestKey(target.topic);
      await redis.xgroup('CREATE', stream, target.group, '$', 'MKSTREAM');
      const conn = blockingClient();
      let stop = false;
      const serving = (async () => {
        while (!stop) {
          const res = (await conn
            .callBuffer(
              'XREADGROUP',
              'GROUP',
              target.group,
              'c1',
              'COUNT',
              REQUEST_PREFETCH,
              'BLOCK',
              BLOCK_MS,
              'STREAMS',
              stream,
              '>',
            )
            .catch(() => null)) as StreamReply;
          const entries = res?.[0]?.[1];
          if (!entries || entries.length === 0) continue;
          const p = redis.pipeline();
          const ids: Buffer[] = new Array(entries.length);
          for (let i = 0; i < entries.length; i++) {
            const [id, fields] = entries[i] as [Buffer, Buffer[]];
            ids[i] = id;
            // Fields: d <payload> reply-to <key> correlation-id <id>
            p.xadd(
              fields[3] as Buffer,
              'MAXLEN',
              '~',
              MAXLEN,
              '*',
              'correlation-id',
              fields[5] as Buffer,
              'body',
              REPLY_BYTES,
            );
          }
          p.xack(stream, target.group, ...ids);
          // A failed reply shows as its requester's timeout, as with busbar's responder.
          p.exec().catch(() => undefined);
        }
      })();
      return {
        async close() {
          stop = true;
          await serving;
          conn.disconnect();
        },
      };
    },
    request(target, payload) {
      if (!reader) {
        reader = blockingClient();
        loop = readReplies(reader);
      }
      return pending.request((id) => {
        redis
          .xadd(
            requestKey(target.topic),
            'MAXLEN',
            '~',
            MAXLEN,
            '*',
            'd',
            payload,
            'reply-to',
            replyKey,
            'correlation-id',
            id,
          )
          .catch((error: unknown) => pending.settle(id, error instanceof Error ? error : new Error(String(error))));
      });
    },
    async close() {
      stopped = true;
      await loop;
      reader?.disconnect();
      await redis.del(replyKey);
    },
  };
}
