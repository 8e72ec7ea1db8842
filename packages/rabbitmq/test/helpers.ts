import { type Bus, connect, silentLogger } from '@busbar/core';
import { brokerUrls } from '@busbar/testing';
import amqplib from 'amqplib';
import { driver } from '../src/index.js';

export function open(extra: Record<string, unknown> = {}, url: string = brokerUrls.rabbitmq): Promise<Bus> {
  return connect({ url, driver, logger: silentLogger, ...extra });
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

export async function deleteQueues(...names: string[]): Promise<void> {
  await raw(async (channel) => {
    for (const name of names) await channel.deleteQueue(name).catch(() => undefined);
  }).catch(() => undefined);
}
