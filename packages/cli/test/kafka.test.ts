import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describeCli } from './suite.js';

describeCli(
  {
    name: 'kafka',
    url: brokerUrls.kafka,
    idleMs: 2_000,
    topology: (t, g) => [`${t}.${g}.retry`, `busbar-dlq.${t}.${g}.dlq`],
  },
  await brokerAvailable('kafka'),
);
