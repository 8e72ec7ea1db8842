import type { SettledEvent } from '@busbar/core';
import type { Attributes, Counter, Histogram, Meter } from '@opentelemetry/api';
import { ATTR } from './attributes.js';
import { errorType } from './safe.js';

/** Seconds-scale buckets for messaging durations (semconv's advice for `messaging.*.duration`). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

/**
 * The metric instruments, named after the OpenTelemetry messaging semantic
 * conventions, plus `busbar.messages.settled` for busbar's delivery outcomes
 * (retries and dead letters have no semconv metric).
 */
export class MessagingMetrics {
  readonly #sent: Counter;
  readonly #consumed: Counter;
  readonly #sendDuration: Histogram;
  readonly #processDuration: Histogram;
  readonly #settled: Counter;

  constructor(meter: Meter) {
    this.#sent = meter.createCounter('messaging.client.sent.messages', {
      description: 'Messages a producer attempted to send to the broker.',
      unit: '{message}',
    });
    this.#consumed = meter.createCounter('messaging.client.consumed.messages', {
      description: 'Messages delivered to a handler.',
      unit: '{message}',
    });
    this.#sendDuration = meter.createHistogram('messaging.client.operation.duration', {
      description: 'Duration of a send operation, until the broker confirmed it.',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    });
    this.#processDuration = meter.createHistogram('messaging.process.duration', {
      description: 'Duration of a handler run.',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    });
    this.#settled = meter.createCounter('busbar.messages.settled', {
      description: 'Deliveries settled, by outcome (acked, retried, dead-lettered, duplicate, dropped, released).',
      unit: '{message}',
    });
  }

  sent(attributes: Attributes, count: number, seconds: number): void {
    this.#sent.add(count, attributes);
    this.#sendDuration.record(seconds, attributes);
  }

  consumed(attributes: Attributes): void {
    this.#consumed.add(1, attributes);
  }

  processed(attributes: Attributes, seconds: number): void {
    this.#processDuration.record(seconds, attributes);
  }

  settled(event: SettledEvent): void {
    const attributes: Attributes = {
      [ATTR.system]: event.system,
      [ATTR.destination]: event.topic,
      [ATTR.outcome]: event.outcome,
    };
    if (event.group !== undefined) attributes[ATTR.group] = event.group;
    if (event.error !== undefined) attributes[ATTR.errorType] = errorType(event.error);
    this.#settled.add(1, attributes);
  }
}
