import { failedConnect as connectFailing, opensslAvailable } from '@busbar/testing';
import { driver } from '../src/index.js';
import { privateBrokerAvailable } from './helpers.js';
import { hasDynsec } from './secure-mosquitto.js';

/** Mosquitto, its dynamic security plugin and openssl are needed; with CI set, a missing one is a failure. */
export function secureBrokerAvailable(): boolean {
  if (!privateBrokerAvailable()) return false;
  const missing = opensslAvailable() ? (hasDynsec ? undefined : 'mosquitto_dynamic_security.so') : 'openssl';
  if (missing === undefined) return true;
  if (process.env.CI === 'true' || process.env.CI === '1') throw new Error(`${missing} is missing and CI is set`);
  console.warn(`[busbar] skipping the MQTT security tests: ${missing} is missing`);
  return false;
}

/** The shared `failedConnect` with this driver; a short reconnect period, so a reconnect loop would show. */
export function failedConnect(url: string, extra: Record<string, unknown> = {}): ReturnType<typeof connectFailing> {
  return connectFailing({ url, driver, reconnectPeriodMs: 200, ...extra });
}
