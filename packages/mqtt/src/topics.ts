import { InvalidTopicError } from '@busbar/core';
import { topicMatches } from '@busbar/core/transport';

/** MQTT's limit on a topic name, in UTF-8 bytes. */
export const MAX_TOPIC_BYTES = 65_535;

/** A topic name whose levels are all valid busbar segments (the common case: no escaping). */
const PLAIN_PATH = /^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/;
/** Characters of a received topic name that would change its meaning as a busbar topic. */
const ESCAPED = /[/%.*+#]/g;
const ESCAPES: Readonly<Record<string, string>> = { '%': '%25', '.': '%2E', '*': '%2A', '+': '%2B', '#': '%23' };

/**
 * Maps busbar topics onto MQTT topic paths and back: `orders.created` <->
 * `<prefix>orders/created`; in subscriptions `*` -> `+` and `#` -> `#`.
 */
export class TopicMap {
  readonly prefix: string;
  readonly retryPrefix: string;
  /** `<retryPrefix>/`: every retry topic starts with it. */
  readonly retryHead: string;
  /** `<prefix>busbar-reply/`: every request/reply response topic busbar subscribes starts with it. */
  readonly replyHead: string;
  readonly #cache = new Map<string, string>();

  constructor(prefix: string, retryPrefix: string) {
    this.prefix = prefix;
    this.retryPrefix = retryPrefix.endsWith('/') ? retryPrefix.slice(0, -1) : retryPrefix;
    this.retryHead = `${this.retryPrefix}/`;
    // A topic level, not a header: core's HEADER registry does not name it.
    this.replyHead = `${prefix}busbar-reply/`;
  }

  /** MQTT topic (or filter) of a busbar topic (or pattern). */
  toPath(topic: string): string {
    let path = this.#cache.get(topic);
    if (path === undefined) {
      path = this.prefix + topic.replaceAll('.', '/').replaceAll('*', '+');
      if (this.#cache.size < 10_000) this.#cache.set(topic, path);
    }
    return path;
  }

  /**
   * Busbar topic of a received MQTT topic name, or undefined for one outside the prefix. Levels become
   * dot-separated segments; in a level a foreign client chose, `%`, `.`, `*`, `+` and `#` are
   * percent-encoded (`a/b.c` -> `a.b%2Ec`, never the same as `a/b/c`), everything else (spaces, other
   * Unicode, empty levels) is kept as is: `a/b c//d` -> `a.b c..d`.
   */
  fromPath(path: string): string | undefined {
    if (!path.startsWith(this.prefix)) return undefined;
    const rest = path.slice(this.prefix.length);
    if (PLAIN_PATH.test(rest)) return rest.replaceAll('/', '.');
    return rest.replace(ESCAPED, (c) => (c === '/' ? '.' : (ESCAPES[c] ?? c)));
  }

  /**
   * Where a group's retries of a message received on the MQTT topic `path` go; only that group subscribes
   * to it. Built from the topic name as received (not from the busbar topic), so a foreign topic name comes
   * back exactly: a retry of a retry keeps its path.
   */
  retryPathOf(group: string, path: string): string {
    const head = `${this.retryHead}${group}/`;
    return path.startsWith(head) ? path : `${head}${path}`;
  }

  /** Where a group's retries of `topic` go (the subscription filter of its retry sessions). */
  retryPath(group: string, topic: string): string {
    return `${this.retryPrefix}/${group}/${this.toPath(topic)}`;
  }

  /** The original busbar topic of a message received on a retry path. */
  fromRetryPath(path: string, group: string): string | undefined {
    const head = `${this.retryPrefix}/${group}/`;
    return path.startsWith(head) ? this.fromPath(path.slice(head.length)) : undefined;
  }

  /** Shared-subscription filter of a group (`$share/<group>/<filter>`). */
  static shared(group: string, filter: string): string {
    return `$share/${group}/${filter}`;
  }

  /** Broker-specific checks on top of core's portable grammar. */
  validate(topic: string): void {
    const path = this.toPath(topic);
    if (Buffer.byteLength(path, 'utf8') > MAX_TOPIC_BYTES) {
      throw new InvalidTopicError(
        `Topic '${topic.slice(0, 80)}...' maps to an MQTT topic over ${MAX_TOPIC_BYTES} bytes`,
      );
    }
  }
}

/** Value of the first entry whose busbar pattern matches `topic`. */
export function firstMatch<V>(entries: readonly (readonly [string, V])[], topic: string): V | undefined {
  for (const [pattern, value] of entries) if (topicMatches(pattern, topic)) return value;
  return undefined;
}
