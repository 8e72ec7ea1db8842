import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { DEAD_LETTER_READER_GROUP } from '@busbar/core/transport';
import { raw, testOptions } from './helpers.js';

const run = promisify(execFile);

const regexEscape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * The conformance suite's `refuseWrites` on RabbitMQ (the suite passes a dead-letter topic).
 *
 * - No queue for it yet (the usual case: busbar declares the dead-letter reader queue before the first
 *   write): that queue is declared first as a classic queue with `x-max-length: 0` and
 *   `x-overflow: reject-publish`, bound to the topic. busbar's own declaration of it then fails
 *   (PRECONDITION_FAILED: other arguments), and a write routed there anyway is nacked. Nothing is stored.
 * - The reader queue exists already: a policy (`rabbitmqctl set_policy`) gives every queue of the topic
 *   `max-length: 0` + `overflow: reject-publish`, so publishes routed there are nacked. (A quorum queue
 *   that is empty still takes one message before it starts rejecting: RabbitMQ lets it overshoot.)
 *
 * The restore deletes that queue or clears the policy.
 */
export async function refuseWrites(topic: string): Promise<() => Promise<void>> {
  const queue = `${topic}.${DEAD_LETTER_READER_GROUP}`;
  const exists = await raw(async (channel) => {
    try {
      await channel.checkQueue(queue);
      return true;
    } catch {
      return false;
    }
  });
  if (!exists) {
    await raw(async (channel) => {
      await channel.assertQueue(queue, {
        durable: true,
        arguments: {
          'x-queue-type': 'classic',
          'x-max-length': 0,
          'x-overflow': 'reject-publish',
          'x-expires': testOptions.queueExpiresMs,
        },
      });
      await channel.bindQueue(queue, testOptions.exchange, topic);
    });
    return async () => {
      await raw((channel) => channel.deleteQueue(queue));
    };
  }
  const name = `busbar-refuse-${randomBytes(6).toString('hex')}`;
  const definition = JSON.stringify({ 'max-length': 0, overflow: 'reject-publish' });
  const pattern = `^${regexEscape(topic)}\\.[^.]+$`;
  await run('rabbitmqctl', ['set_policy', '--apply-to', 'queues', '--priority', '900', name, pattern, definition]);
  return async () => {
    await run('rabbitmqctl', ['clear_policy', name]);
  };
}
