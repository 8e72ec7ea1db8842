/** @busbar/cli: the `busbar` command as a function, for embedding and tests. */

export type { Output } from './format.js';
export { COMMANDS, main, usage } from './main.js';
