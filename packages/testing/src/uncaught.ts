/**
 * Collects uncaught exceptions and unhandled rejections until `stop()`. In production each is a crash (a
 * diagnostics-channel subscriber's throw, a socket data handler's, a promise nobody waits for), so a test that
 * provokes one of those paths asserts that `errors` stays empty.
 */
export function watchUncaught(): { readonly errors: unknown[]; stop(): void } {
  const errors: unknown[] = [];
  const collect = (error: unknown) => void errors.push(error);
  process.on('uncaughtException', collect);
  process.on('unhandledRejection', collect);
  return {
    errors,
    stop: () => {
      process.off('uncaughtException', collect);
      process.off('unhandledRejection', collect);
    },
  };
}
