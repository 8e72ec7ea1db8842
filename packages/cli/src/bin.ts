#!/usr/bin/env node
import { EXIT } from './errors.js';
import { main } from './main.js';

// The first Ctrl-C (or SIGTERM) stops the command and closes the bus cleanly: a re-drive keeps every dead letter
// whose re-publish was not confirmed, a tail releases what it holds. A second one exits at once.
const controller = new AbortController();
let interrupted = false;
const onSignal = () => {
  if (interrupted) process.exit(EXIT.interrupted);
  interrupted = true;
  controller.abort();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// `busbar dlq list --json | head`: the reader went away. Stop quietly, as a Unix tool does, instead of a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.ok);
    throw error;
  });
}

const status = await main(process.argv.slice(2), undefined, controller.signal);
process.exitCode = status;
// Drivers may keep sockets or timers open for a moment after close(): do not let them hold the exit.
setTimeout(() => process.exit(), 2_000).unref();
