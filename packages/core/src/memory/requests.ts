import { NoRespondersError } from '../errors.js';
import { topicMatches } from '../names.js';
import { PendingReplies } from '../transport/replies.js';
import type {
  IncomingRequest,
  OutgoingRecord,
  ReplyRecord,
  RequestReply,
  RespondSpec,
  TransportSubscription,
} from '../transport/spi.js';

type Serve = (request: IncomingRequest) => void;

interface Responder {
  readonly spec: RespondSpec;
  readonly serve: Serve;
}

/** The responders of one in-process broker: requests go to one member of each group and to every ungrouped one. */
export class MemoryResponders {
  readonly #responders = new Set<Responder>();
  readonly #turn = new Map<string, number>();

  add(responder: Responder): () => void {
    this.#responders.add(responder);
    return () => void this.#responders.delete(responder);
  }

  /** The responders a request on `topic` goes to; empty when nobody serves it. */
  route(topic: string): Responder[] {
    const groups = new Map<string, Responder[]>();
    const out: Responder[] = [];
    for (const r of this.#responders) {
      if (!topicMatches(r.spec.topic, topic)) continue;
      if (r.spec.group === undefined) out.push(r);
      else groups.set(r.spec.group, [...(groups.get(r.spec.group) ?? []), r]);
    }
    for (const [group, members] of groups) {
      const turn = this.#turn.get(group) ?? 0;
      this.#turn.set(group, turn + 1);
      out.push(members[turn % members.length] as Responder);
    }
    return out;
  }
}

/** Request/reply on the memory transport: the reference for what drivers do with their broker's mechanism. */
export class MemoryRequestReply implements RequestReply {
  readonly #responders: MemoryResponders;
  // Keyed by a sequence, not the request id: two callers may send the same id (a retry of a timed-out request).
  readonly #pending = new PendingReplies('memory');
  readonly #own = new Set<() => void>();
  #next = 0;

  constructor(responders: MemoryResponders) {
    this.#responders = responders;
  }

  request(record: OutgoingRecord, options: { timeoutMs: number; signal?: AbortSignal }): Promise<ReplyRecord> {
    const targets = this.#responders.route(record.topic);
    if (targets.length === 0) return Promise.reject(new NoRespondersError(record.topic));
    const correlation = String(this.#next++);
    return this.#pending.open(correlation, record.topic, options, undefined, () => {
      for (const target of targets) {
        target.serve({
          id: record.id,
          topic: record.topic,
          headers: record.headers,
          body: record.body,
          contentType: record.contentType,
          timestamp: record.timestamp,
          raw: record,
          // The first reply wins; a late one is dropped, as on a broker's reply inbox.
          reply: async (reply) => void this.#pending.resolve(correlation, reply),
        });
      }
    });
  }

  lateReplies(): number {
    return this.#pending.late;
  }

  async respond(
    spec: RespondSpec,
    callbacks: { onRequest: (request: IncomingRequest) => void; onError: (error: Error) => void },
  ): Promise<TransportSubscription> {
    let active = true;
    const remove = this.#responders.add({ spec, serve: (request) => active && callbacks.onRequest(request) });
    const stop = () => {
      active = false;
      remove();
      this.#own.delete(stop);
    };
    this.#own.add(stop);
    return { stop: async () => stop(), close: async () => stop() };
  }

  close(): void {
    this.#pending.close();
    for (const stop of [...this.#own]) stop();
  }
}
