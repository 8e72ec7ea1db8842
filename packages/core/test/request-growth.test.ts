import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { type Bus, BusbarError, connect, type Message, silentLogger } from '../src/index.js';
import { TimeoutLane } from '../src/transport/lane.js';

// A heap measurement needs a collection first: `gc` without starting the worker with --expose-gc.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap and the buffers outside it (a reply body of 20 KB is one of those). */
const memoryAfterGc = (): number => {
  gc();
  gc();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
};

const REQUESTS = 5_000;
/** 5,000 bodies of 20 KB: about 100 MB when each stays referenced behind the stuck one. */
const BOUND = 20_000_000;

/** Memory kept after REQUESTS round trips, each with a fresh 20 KB reply, made while one request is stuck. */
async function keptBehind(bus: Bus, requestTimeoutMs: number): Promise<number> {
  const before = memoryAfterGc();
  for (let round = 0; round < REQUESTS / 200; round++) {
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        bus.request<number, string>('growth.rpc', i, { timeoutMs: requestTimeoutMs }),
      ),
    );
  }
  return memoryAfterGc() - before;
}

describe('request/reply memory behind a request nobody answers', () => {
  // The first request is never answered (a responder that died holding it, or a handler that never returns);
  // the others are answered with 20 KB each.
  const cases = [
    {
      side: 'requester',
      what: "keeps no reply of a later request with the same timeout until the stuck one's timeout",
      // Answered at once (no handler timeout to wait on here: this is the requester's side).
      handler: (m: Message<number>) => (m.payload < 0 ? new Promise<string>(() => undefined) : 'x'.repeat(20_000)),
      respond: { concurrency: 100 },
      stuckTimeoutMs: 600_000,
    },
    {
      side: 'responder',
      what: "keeps no request or result of a later handler until the stuck handler's timeout",
      // Asynchronous: every run takes its place in the responder's timeout lane, behind the stuck one.
      handler: async (m: Message<number>) =>
        m.payload < 0 ? new Promise<string>(() => undefined) : 'x'.repeat(20_000),
      respond: { concurrency: 100, handlerTimeoutMs: 600_000 },
      // Another timeout: a lane of its own on the requester's side, so only the responder's lane is stuck.
      stuckTimeoutMs: 600_001,
    },
  ];
  for (const { side, what, handler, respond, stuckTimeoutMs } of cases) {
    it(`the ${side} ${what}`, async () => {
      const bus = await connect({ url: `memory://request-growth-${side}`, logger: silentLogger });
      try {
        await bus.respond<number, string>('growth.rpc', handler, respond);
        const stuck = bus.request('growth.rpc', -1, { timeoutMs: stuckTimeoutMs }).catch((e: unknown) => e);
        expect(await keptBehind(bus, 600_000)).toBeLessThan(BOUND);
        await bus.close();
        // The unanswered request is still failed, by the close (it was not lost on the way).
        expect(BusbarError.is(await stuck, 'BUSBAR_CLOSED')).toBe(true);
      } finally {
        await bus.close();
      }
    }, 60_000);
  }

  it('a lane lets go of settled items behind an unsettled one, and still times that one out', async () => {
    const expired: number[] = [];
    const lane = new TimeoutLane<{ n: number; deadline: number; settled: boolean }>(100, (item) =>
      expired.push(item.n),
    );
    const add = (n: number) => {
      const item = { n, deadline: lane.deadline(), settled: false };
      lane.add(item);
      return item;
    };
    add(-1);
    const refs: WeakRef<object>[] = [];
    for (let n = 0; n < 20_000; n++) {
      const item = add(n);
      refs.push(new WeakRef(item));
      item.settled = true;
      lane.settled(item);
    }
    // A WeakRef keeps its target alive until the job that made it ends.
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    const kept = refs.filter((ref) => ref.deref() !== undefined).length;
    expect(kept).toBeLessThan(REQUESTS);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(expired).toEqual([-1]);
    expect(lane.armed).toBe(false);
  });
});
