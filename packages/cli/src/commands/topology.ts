import { deadLetterTopic } from '@busbar/core';
import { topicArg } from '../args.js';
import type { Command } from '../command.js';
import { driverOptions } from '../connection.js';
import { EXIT } from '../errors.js';
import { jsonLine, keyValues, table } from '../format.js';
import { topologyRows } from '../topology.js';

export const topology: Command = {
  words: ['topology'],
  synopsis: 'topology <topic> [--group g]',
  summary: 'what busbar declares and uses on this broker for the topic and group, and its capabilities',
  flags: ['group'],
  check: (_values, args) => void topicArg(args, 'topology'),
  async run(context) {
    const topic = topicArg(context.args, 'topology');
    const group = context.values.group;
    const dlq = deadLetterTopic(topic, group);
    const transport = context.bus.transport;
    const capabilities = context.bus.capabilities;
    const objects = topologyRows(transport, topic, group, dlq, driverOptions(context.values));
    if (context.values.json) {
      context.io.out(
        jsonLine({
          transport,
          topic,
          group: group ?? null,
          deadLetterTopic: dlq,
          deadLetterReaderGroup: 'busbar-dlq',
          capabilities,
          objects,
        }),
      );
      return EXIT.ok;
    }
    const lines = keyValues([
      ['transport', transport],
      ['topic', topic],
      ['group', group ?? '(none: broadcast)'],
      ['dead-letter topic', dlq],
      ['dead-letter reader', 'busbar-dlq'],
      [
        'capabilities',
        Object.entries(capabilities)
          .filter(([name]) => ['durableGroups', 'ordering', 'wildcards', 'requestReply'].includes(name))
          .map(([name, on]) => `${name}=${on ? 'yes' : 'no'}`)
          .join(' '),
      ],
    ]);
    lines.push(
      '',
      ...table(
        ['KIND', 'NAME', 'NOTE'],
        objects.map((o) => [o.kind, o.name, o.note]),
      ),
    );
    for (const line of lines) context.io.out(line);
    return EXIT.ok;
  },
};
