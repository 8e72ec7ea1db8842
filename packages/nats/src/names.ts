import { createHash } from 'node:crypto';
import { InvalidTopicError } from '@busbar/core';
import { topicMatches } from '@busbar/core/transport';
import type { NatsOptions } from './options.js';

/**
 * How busbar names map onto NATS: topics are subjects 1:1 (`.` is the token
 * separator in both), `*` stays `*`, a trailing `#` becomes `>` (which needs at
 * least one token, so `a.#` also needs the bare `a` captured by streams).
 */
export function toSubject(topic: string): string {
  return topic.endsWith('#') ? `${topic.slice(0, -1)}>` : topic;
}

/** Subjects a stream must capture for a busbar pattern: `a.#` is `a` plus `a.>`. */
export function streamSubjects(pattern: string): string[] {
  if (pattern === '#') return ['>'];
  if (pattern.endsWith('.#')) return [pattern.slice(0, -2), `${pattern.slice(0, -1)}>`];
  return [pattern];
}

export interface StreamTarget {
  readonly name: string;
  /** Subjects the stream must capture. */
  readonly subjects: readonly string[];
}

/** Whether every topic `pattern` matches also matches `cover` (enough for picking a stream). */
function covers(cover: string, pattern: string): boolean {
  if (cover === pattern) return true;
  const c = cover.split('.');
  const p = pattern.split('.');
  for (let i = 0; i < c.length; i++) {
    if (c[i] === '#') return true;
    if (i >= p.length || p[i] === '#') return false;
    if (c[i] !== '*' && c[i] !== p[i]) return false;
  }
  return c.length === p.length;
}

/** The stream a topic (or a subscription pattern) lives in, from the `streams` map or the `streamPrefix` rule. */
export function streamFor(topic: string, options: NatsOptions): StreamTarget {
  const wildcard = topic.includes('*') || topic.includes('#');
  for (const [name, patterns] of Object.entries(options.streams)) {
    for (const pattern of patterns) {
      if (wildcard ? covers(pattern, topic) : topicMatches(pattern, topic)) {
        return { name, subjects: patterns.flatMap(streamSubjects) };
      }
    }
  }
  const first = topic.split('.')[0] as string;
  if (first === '*' || first === '#') {
    throw new InvalidTopicError(
      `Topic '${topic}' starts with a wildcard: with the default mapping (one stream per first segment) it spans ` +
        "several streams. Map it to one stream with the 'streams' option.",
    );
  }
  const name = `${options.streamPrefix}${first}`;
  if (name.length > 255) throw new InvalidTopicError(`Stream name for topic '${topic}' is over 255 characters`);
  return { name, subjects: [first, `${first}.>`] };
}

/**
 * The durable consumer of `group` on `topic`. Consumer names cannot hold `.`,
 * `*` or `>`, and one group may consume several topics of one stream, so the
 * topic is folded in readably plus a short hash that keeps it unique.
 */
export function consumerName(topic: string, group: string): string {
  const readable = topic.replace(/\*/g, 'STAR').replace(/#/g, 'ALL').replace(/\./g, '_').slice(0, 60);
  const hash = createHash('sha1').update(topic).digest('hex').slice(0, 8);
  return `${group}__${readable}_${hash}`;
}

/** Whether NATS subject (or filter) `cover` matches every subject `subject` matches (`*` one token, `>` the rest). */
export function subjectCovers(cover: string, subject: string): boolean {
  const c = cover.split('.');
  const s = subject.split('.');
  for (let i = 0; i < c.length; i++) {
    if (c[i] === '>') return s.length > i && s[i] !== undefined;
    if (i >= s.length) return false;
    if (c[i] === '*') {
      if (s[i] === '>') return false;
      continue;
    }
    if (c[i] !== s[i]) return false;
  }
  return c.length === s.length;
}

/** NATS-specific subject checks on top of core's portable grammar. */
export function assertNatsTopic(topic: string, use: 'publish' | 'subscribe', options: NatsOptions): void {
  if (use === 'publish' && /[*>#\s]/.test(topic)) {
    throw new InvalidTopicError(`Topic '${topic}' is not a valid NATS publish subject (no wildcards or whitespace)`);
  }
  if (topic.startsWith('$') || topic.startsWith('_INBOX') || topic.startsWith('_busbar')) {
    throw new InvalidTopicError(
      `Topic '${topic}' is in a subject space NATS or busbar reserves ($..., _INBOX..., _busbar...)`,
    );
  }
  streamFor(topic, options);
}
