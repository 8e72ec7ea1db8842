import diagnostics from 'node:diagnostics_channel';
import type { SettledEvent } from '@busbar/core';

/** Listens to busbar's per-message outcomes (the same events tracing and metrics adapters use). */
export function onSettled(listener: (event: SettledEvent) => void): () => void {
  const handler = (event: unknown) => listener(event as SettledEvent);
  diagnostics.subscribe('busbar:settled', handler);
  return () => diagnostics.unsubscribe('busbar:settled', handler);
}

export async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
