import { createHash } from 'node:crypto';
import type { RedisClient } from './client.js';

/** A Lua script run by EVALSHA, loaded with EVAL on the first NOSCRIPT (e.g. after a server restart). */
export class Script {
  readonly source: string;
  readonly sha: string;
  constructor(source: string) {
    this.source = source;
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(client: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return client.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

/** Server time in ms: due times never depend on client clocks. */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * Schedules a retry and acks its source entry in one step, so the retry is
 * durable before (and exactly when) the source is acked.
 * KEYS: retry set, source stream. ARGV: group, entry id, delay ms, payload, '1' to XDEL the source (retry stream).
 */
export const scheduleRetry = new Script(`${NOW}
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
if ARGV[5] == '1' then redis.call('XDEL', KEYS[2], ARGV[2]) end
return 1`);

/**
 * Moves due retries from the retry set to the group's retry stream. Returns
 * {moved, ms until the next one is due or -1}.
 * KEYS: retry set, retry stream. ARGV: limit.
 */
export const moveDue = new Script(`${NOW}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'r', m)
  redis.call('ZREM', KEYS[1], m)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then return {#due, math.max(0, tonumber(nxt[2]) - now)} end
return {#due, -1}`);

/**
 * Sets the idle time of pending entries that this consumer still owns: 0 to
 * keep held entries from being claimed, or the claim threshold to release them
 * to any member at once. Entries another member claimed meanwhile are left alone.
 * KEYS: stream. ARGV: group, consumer, idle ms, ids...
 */
export const setIdle = new Script(`local n = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', tonumber(ARGV[3]), 'JUSTID')
    n = n + 1
  end
end
return n`);

/** Idempotency claim. KEYS: key. ARGV: lease ms. Returns 'claimed', 'done' or 'busy'. */
export const claimKey = new Script(`local v = redis.call('GET', KEYS[1])
if v == 'done' then return 'done' end
if v then return 'busy' end
redis.call('SET', KEYS[1], 'claimed', 'PX', ARGV[1])
return 'claimed'`);

/** Drops a claim that is not done. KEYS: key. */
export const releaseKey = new Script(`if redis.call('GET', KEYS[1]) == 'claimed' then redis.call('DEL', KEYS[1]) end
return 1`);
