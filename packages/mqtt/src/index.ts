import { type Driver, defineDriver, TLS_SECRET_OPTIONS } from '@busbar/core/transport';
import { mqttOptions } from './options.js';
import { MqttTransport } from './transport.js';

/** The MQTT 5 driver: `connect('mqtt://host:1883')` (also `mqtts://`, `ws://`, `wss://`). */
export const driver: Driver<typeof mqttOptions> = defineDriver({
  name: 'mqtt',
  schemes: ['mqtt', 'mqtts', 'ws', 'wss'],
  options: mqttOptions,
  secretOptions: ['password', ...TLS_SECRET_OPTIONS],
  create: (context) => new MqttTransport(context),
});

export type { MqttOptions } from './options.js';
export { mqttOptions };
