import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describeCli } from './suite.js';

describeCli(
  {
    name: 'nats',
    url: brokerUrls.nats,
    idleMs: 500,
    topology: (t, g) => [`BUSBAR_${t.split('.')[0]}`, `${g}__${t.replaceAll('.', '_')}_<hash>`],
  },
  await brokerAvailable('nats'),
);
