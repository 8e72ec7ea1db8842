import { inspect } from 'node:util';
import { channels, connect, type PublishContext, silentLogger } from '@busbar/core';
import { defineDriver } from '@busbar/core/transport';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';

const SECRET = 'tr4ce-Canary-pw';

/** A driver whose publish fails the way native clients do: the URL, password included, in the error. */
const leaky = defineDriver({
  name: 'leaky',
  schemes: ['leaky'],
  options: z.object({}),
  create: (ctx) => ({
    capabilities: { durableGroups: false, ordering: false, wildcards: false, requestReply: false },
    maxPayloadBytes: 1_000,
    connect: async () => undefined,
    publish: (records) =>
      records[0]?.topic === 'throws'
        ? (() => {
            throw new Error(`socket to ${ctx.url.href} closed`);
          })()
        : Promise.reject(new Error(`socket to ${ctx.url.href} closed`, { cause: new Error(`auth ${SECRET}`) })),
    subscribe: async () => ({ stop: async () => undefined, close: async () => undefined }),
    declareGroup: async () => undefined,
    close: async () => undefined,
  }),
});

const seen: unknown[] = [];
const none = () => undefined;
const handlers = {
  start: none,
  end: none,
  asyncStart: none,
  asyncEnd: none,
  error: (ctx: PublishContext & { error?: unknown }) => void seen.push(ctx.error),
};

describe('busbar:publish tracing', () => {
  afterEach(() => {
    channels.publish.unsubscribe(handlers);
    seen.length = 0;
  });

  it("a subscriber sees the publish's error as the caller does: without the password", async () => {
    channels.publish.subscribe(handlers);
    const bus = await connect({ url: `leaky://app:${SECRET}@host`, driver: leaky, logger: silentLogger });
    try {
      for (const topic of ['rejects', 'throws']) {
        const error = await bus.publish(topic, 1).catch((e: unknown) => e);
        expect(inspect(error, { depth: 5 })).not.toContain(SECRET);
      }
      expect(seen).toHaveLength(2);
      for (const error of seen) {
        expect(error).toBeInstanceOf(Error);
        expect(`${inspect(error, { depth: 5 })}\n${(error as Error).stack}`).not.toContain(SECRET);
      }
    } finally {
      await bus.close();
    }
  });
});
