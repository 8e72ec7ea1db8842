/**
 * @busbar/opentelemetry: OpenTelemetry traces and metrics for every busbar
 * transport, fed from core's diagnostics channels. Depends on
 * `@opentelemetry/api` only: bring your own SDK.
 */

export { ATTR as ATTRIBUTES } from './attributes.js';
export type { InstrumentationOptions } from './instrument.js';
export { instrumentBusbar } from './instrument.js';
