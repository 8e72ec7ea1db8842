import type { ReplyRecord } from '@busbar/core/transport';
import { bodyArgument, decodeEntry } from './codec.js';
import { CONTENT_TYPE_FIELD, headerField } from './fields.js';

/**
 * Request/reply wire format (README "Request/reply"). A request is an entry of the topic's request stream in
 * the normal entry layout (codec.ts) plus `reply-to` (the requester's reply stream key) and `correlation-id`.
 * A reply is an entry of that reply stream: `correlation-id`, `body`, `content-type` (when known) and one
 * `h:<name>` field per header (busbar's `busbar-error*` ones mark a failed request).
 */
export const REPLY_TO_FIELD = 'reply-to';
export const CORRELATION_FIELD = 'correlation-id';

/** Request streams are trimmed on every XADD: a request nobody answers must not stay forever. */
export const REQUEST_MAXLEN = 10_000;
/** Reply streams too (replies are read as they come; this only bounds a reader that fell far behind). */
export const REPLY_MAXLEN = 10_000;

const REPLY_TO = Buffer.from(REPLY_TO_FIELD);
const CORRELATION = Buffer.from(CORRELATION_FIELD);

/** An entry's `reply-to` and `correlation-id` split from the fields the normal decoder reads. */
export interface RrFields {
  readonly replyTo: string | undefined;
  readonly correlationId: string | undefined;
  readonly rest: Buffer[];
}

export function splitRrFields(fields: Buffer[]): RrFields {
  let replyTo: string | undefined;
  let correlationId: string | undefined;
  const rest: Buffer[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as Buffer;
    const value = fields[i + 1] as Buffer;
    if (name.equals(REPLY_TO)) replyTo = value.toString();
    else if (name.equals(CORRELATION)) correlationId = value.toString();
    else rest.push(name, value);
  }
  return { replyTo, correlationId, rest };
}

/** A reply's XADD field arguments, appended to `args`. */
export function pushReplyFields(args: (string | Buffer | number)[], correlationId: string, reply: ReplyRecord): void {
  args.push(CORRELATION_FIELD, correlationId, 'body', bodyArgument(reply.body));
  if (reply.contentType !== undefined && reply.contentType !== '') args.push(CONTENT_TYPE_FIELD, reply.contentType);
  for (const name in reply.headers) args.push(headerField(name), reply.headers[name] as string);
}

/** A reply entry (busbar's or a foreign responder's: body by the same rules as any entry) as a ReplyRecord. */
export function decodeReply(entryId: string, rest: Buffer[]): ReplyRecord {
  const entry = decodeEntry(entryId, rest);
  return { body: entry.body, contentType: entry.contentType, headers: entry.headers };
}
