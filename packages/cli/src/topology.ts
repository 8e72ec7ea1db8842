/**
 * What busbar declares or uses on each broker for one topic and group, from the drivers' READMEs (kept here in
 * one table so an operator can find the objects in the broker's own tools). Names that depend on a driver
 * option (`exchange`, `keyPrefix`, `streamPrefix`, `topicPrefix`, `retryTopicPrefix`) use the `-o` value.
 */

export interface TopologyRow {
  readonly kind: string;
  readonly name: string;
  readonly note: string;
}

type Describe = (
  topic: string,
  group: string | undefined,
  dlq: string,
  options: Record<string, unknown>,
) => TopologyRow[];

const READER = 'busbar-dlq';

function option(options: Record<string, unknown>, key: string, fallback: string): string {
  const value = options[key];
  return typeof value === 'string' ? value : fallback;
}

const rabbitmq: Describe = (topic, group, dlq, options) => {
  const exchange = option(options, 'exchange', 'busbar');
  return [
    {
      kind: 'exchange',
      name: exchange,
      note: `durable, type ${option(options, 'exchangeType', 'topic')}; the topic is the routing key`,
    },
    group === undefined
      ? { kind: 'queue', name: '(server-named)', note: 'exclusive auto-delete queue per broadcast subscriber' }
      : { kind: 'queue', name: `${topic}.${group}`, note: `durable group queue bound with '${topic}'` },
    { kind: 'retry queues', name: `${exchange}.retry.<delay ms>`, note: 'one bucket queue per retry delay' },
    { kind: 'dead-letter queue', name: `${dlq}.${READER}`, note: `bound with '${dlq}', read by dlq commands` },
    {
      kind: 'unroutable',
      name: `${exchange}.unroutable`,
      note: 'alternate exchange + queue for messages no queue took',
    },
  ];
};

const nats: Describe = (topic, group, dlq, options) => {
  const stream = `${option(options, 'streamPrefix', 'BUSBAR_')}${topic.split('.')[0]}`;
  return [
    {
      kind: 'stream',
      name: stream,
      note: `captures '${topic.split('.')[0]}' and '${topic.split('.')[0]}.>' (unless -o streams maps it)`,
    },
    { kind: 'subject', name: topic, note: 'the topic, 1:1' },
    group === undefined
      ? { kind: 'consumer', name: '(ephemeral)', note: 'ordered consumer per broadcast subscriber' }
      : {
          kind: 'consumer',
          name: `${group}__${topic.replaceAll('.', '_')}_<hash>`,
          note: 'durable pull consumer, explicit acks',
        },
    { kind: 'dead letters', name: dlq, note: `subject in the same stream, durable consumer of group ${READER}` },
  ];
};

const redis: Describe = (topic, group, dlq, options) => {
  const prefix = option(options, 'keyPrefix', 'busbar:');
  const rows: TopologyRow[] = [{ kind: 'stream', name: `${prefix}{${topic}}`, note: 'the topic' }];
  if (group === undefined)
    rows.push({ kind: 'reader', name: '(XREAD)', note: 'broadcast: reads from the last entry at subscribe' });
  else {
    rows.push(
      { kind: 'consumer group', name: group, note: `on ${prefix}{${topic}}` },
      { kind: 'retry set', name: `${prefix}{${topic}}:delayed:${group}`, note: 'sorted set by due time' },
      { kind: 'retry stream', name: `${prefix}{${topic}}:retry:${group}`, note: 'read only by this group' },
    );
  }
  rows.push({ kind: 'dead letters', name: `${prefix}{${dlq}}`, note: `stream with consumer group ${READER}` });
  return rows;
};

const kafka: Describe = (topic, group, dlq) => [
  { kind: 'topic', name: topic, note: 'created on first use with the partitions option (default 3)' },
  group === undefined
    ? {
        kind: 'consumer group',
        name: '(unique per subscriber)',
        note: 'broadcast: starts at the latest offset, never commits',
      }
    : { kind: 'consumer group', name: group, note: 'commits only settled offsets' },
  ...(group === undefined
    ? []
    : [{ kind: 'retry topic', name: `${topic}.${group}.retry`, note: 'non-blocking retries' }]),
  { kind: 'dead-letter topic', name: dlq, note: `read by consumer group ${READER}.${dlq}` },
];

const mqtt: Describe = (topic, group, dlq, options) => {
  const prefix = option(options, 'topicPrefix', '');
  const path = (t: string) => `${prefix}${t.split('.').join('/')}`;
  const rows: TopologyRow[] = [{ kind: 'topic', name: path(topic), note: 'the topic, segments as levels' }];
  if (group === undefined)
    rows.push({ kind: 'subscription', name: path(topic), note: 'plain subscription of a clean session' });
  else {
    rows.push(
      {
        kind: 'shared subscription',
        name: `$share/${group}/${path(topic)}`,
        note: 'persistent sessions <name>:<group>:<topic>:<n>',
      },
      {
        kind: 'retry topic',
        name: `${option(options, 'retryTopicPrefix', 'busbar-retry')}/${group}/${path(topic)}`,
        note: "read by the members' :retry sessions",
      },
    );
  }
  rows.push({ kind: 'dead letters', name: path(dlq), note: `shared subscription $share/${READER}/${path(dlq)}` });
  return rows;
};

const memory: Describe = (topic, group, dlq) => [
  { kind: 'topic', name: topic, note: 'in this process only: nothing exists on a broker' },
  { kind: 'group', name: group ?? '(broadcast)', note: '' },
  { kind: 'dead letters', name: dlq, note: '' },
];

const BY_TRANSPORT: Record<string, Describe> = { rabbitmq, nats, redis, kafka, mqtt, memory };

export function topologyRows(
  transport: string,
  topic: string,
  group: string | undefined,
  dlq: string,
  options: Record<string, unknown>,
): TopologyRow[] {
  const describe = BY_TRANSPORT[transport];
  return describe
    ? describe(topic, group, dlq, options)
    : [{ kind: 'transport', name: transport, note: 'no description' }];
}
