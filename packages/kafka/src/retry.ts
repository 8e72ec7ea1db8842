import type { Delivery } from '@busbar/core/transport';
import { HEADER } from '@busbar/core/transport';
import type { Publisher } from './publisher.js';

/**
 * Writes a failed message to its group's retry topic (acks=all) with the
 * attempt, original topic and due time in headers, keeping id, key, body,
 * timestamp and headers.
 */
export function publishRetry(
  publisher: Publisher,
  retryTopic: string,
  delivery: Delivery,
  delayMs: number,
  attempt: number,
  headers: Readonly<Record<string, string>>,
): Promise<void> {
  const record = {
    topic: retryTopic,
    id: delivery.id,
    key: delivery.key,
    headers,
    body: delivery.body,
    contentType: delivery.contentType ?? '',
    timestamp: delivery.timestamp,
  };
  return publisher.publish([record], {
    [HEADER.attempt]: String(attempt),
    [HEADER.topic]: delivery.topic,
    [HEADER.due]: String(Date.now() + delayMs),
  });
}
