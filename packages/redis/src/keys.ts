/**
 * Key layout. Every key of one topic shares the hash tag `{<topic>}`, so in a
 * Redis Cluster the stream, each group's retry stream and retry set live in
 * one slot: the retry scripts touch several of them atomically, and a group
 * reads its stream and retry stream with one XREADGROUP. A dead-letter topic
 * `<topic>.<group>.dlq` is a topic of its own (its own tag and slot): it is
 * written by a separate XADD before the source is acked, never by a script.
 */
export interface TopicKeys {
  /** The topic's stream. */
  readonly stream: string;
  /** The group's retry stream: only this group reads it. */
  readonly retryStream: string;
  /** The group's scheduled retries, scored by due time (server clock, ms). */
  readonly retrySet: string;
}

export function streamKey(prefix: string, topic: string): string {
  return `${prefix}{${topic}}`;
}

export function topicKeys(prefix: string, topic: string, group: string): TopicKeys {
  const stream = streamKey(prefix, topic);
  return { stream, retryStream: `${stream}:retry:${group}`, retrySet: `${stream}:delayed:${group}` };
}

/**
 * The request stream of a topic: `<prefix>rr:{<topic>}`. Same hash tag as the topic stream (same slot), but
 * never the same key: a topic stream's key has the brace right after the prefix.
 */
export function requestStreamKey(prefix: string, topic: string): string {
  return `${prefix}rr:{${topic}}`;
}

/** One transport's reply stream, `<prefix>rr:reply:{<id>}`: a hash tag of its own, so replies spread over a cluster. */
export function replyStreamKey(prefix: string, id: string): string {
  return `${prefix}rr:reply:{${id}}`;
}
