import { type Bus, connect, silentLogger } from '@busbar/core';
import { brokerUrls } from '@busbar/testing';
import amqplib from 'amqplib';
import { driver } from '../src/index.js';

/**
 * Test buses use their own exchange and let the broker expire idle queues
 * (`queueExpiresMs`), so runs on the shared broker never pile up queues and
 * never delete quorum queues in bursts. Two minutes, not more: RabbitMQ keeps
 * about 3 file descriptors open per quorum queue, and at Debian's default limit
 * (1024) it stops accepting connections; with a 10 min expiry the queues of CI's
 * first pass were still there in its second, ~340 of them, and every RabbitMQ
 * test of that pass failed to connect.
 */
export const testOptions = { exchange: 'busbar-test', queueExpiresMs: 120_000 } as const;

export function open(extra: Record<string, unknown> = {}, url: string = brokerUrls.rabbitmq): Promise<Bus> {
  return connect({ url, driver, logger: silentLogger, ...testOptions, ...extra });
}

/** A raw amqplib connection for checking what busbar left on the broker (and cleaning it up). */
export async function raw<T>(work: (channel: amqplib.Channel) => Promise<T>): Promise<T> {
  const conn = await amqplib.connect(brokerUrls.rabbitmq);
  try {
    const channel = await conn.createChannel();
    channel.on('error', () => undefined);
    return await work(channel);
  } finally {
    await conn.close().catch(() => undefined);
  }
}
