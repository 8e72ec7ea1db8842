/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `condition` until it is true; rejects with `message` after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  message = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${message}`);
    await sleep(wait);
  }
}

export interface Collector<T> {
  readonly items: T[];
  push(item: T): void;
  /** Waits until at least `count` items arrived. */
  waitForCount(count: number, timeoutMs: number): Promise<T[]>;
}

/** Collects items (e.g. received payloads) and lets a test wait for a count. */
export function collect<T>(): Collector<T> {
  const items: T[] = [];
  return {
    items,
    push: (item) => {
      items.push(item);
    },
    async waitForCount(count, timeoutMs) {
      await waitFor(() => items.length >= count, timeoutMs, `${count} items (got ${items.length})`);
      return items;
    },
  };
}
