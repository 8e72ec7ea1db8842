import { failedConnect as failed } from '@busbar/testing';
import { driver } from '../src/index.js';

export { errorTexts, expectFatal, expectNoSecret, roundTrip } from '@busbar/testing';

/** A `connect()` to `url` with the Kafka driver and `extra` options that must fail (see @busbar/testing). */
export const failedConnect = (url: string, extra: Record<string, unknown>) => failed({ url, driver, ...extra });
