export { SubscriptionRuntime } from './runtime.js';
export type { Subscription, SubscriptionHost, SubscriptionStats } from './state.js';
export { Context, HOLD } from './state.js';
