import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describeCli } from './suite.js';

describeCli(
  {
    name: 'mqtt',
    url: brokerUrls.mqtt,
    idleMs: 1_000,
    sameName: true,
    topology: (t, g) => [`$share/${g}/${t}`, `busbar-retry/${g}/${t}`],
  },
  await brokerAvailable('mqtt'),
);
