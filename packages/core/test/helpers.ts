import { type Bus, BusbarError, type BusbarErrorCode, type ConnectOptions, connect, silentLogger } from '@busbar/core';
import { uniqueName } from '@busbar/testing';
import { afterEach, expect } from 'vitest';

/**
 * Opens memory:// buses for one test file (call at module level): each is closed after the test that opened it.
 * `prefix` names the buses; `options` go to every connect.
 */
export function memoryBuses(prefix: string, options: Partial<ConnectOptions> = {}): () => Promise<Bus> {
  const open: Bus[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((bus) => bus.close()));
  });
  return async () => {
    const bus = await connect({ url: `memory://${uniqueName(prefix)}`, logger: silentLogger, ...options });
    open.push(bus);
    return bus;
  };
}

/** The BusbarError `run` throws: of `code`, and not retryable (bad input fails the same way every time). */
export function thrownBy(run: () => unknown, code: BusbarErrorCode): BusbarError {
  try {
    run();
  } catch (error) {
    expect(BusbarError.is(error, code), String(error)).toBe(true);
    expect((error as BusbarError).retryable).toBe(false);
    return error as BusbarError;
  }
  throw new Error(`expected a ${code}`);
}
