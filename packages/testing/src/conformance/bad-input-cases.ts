/** The hostile values of the bad-input section (bad-input.ts): each row is one case and one cell of docs/bad-input.md. */

export const HEADER_CASES: [string, Record<string, unknown>][] = [
  ['header value: control character U+0001', { h: 'a\u0001b' }],
  ['header value: line feed', { h: 'a\nb' }],
  ['header value: carriage return', { h: 'a\rb' }],
  ['header value: NUL', { h: 'a\u0000b' }],
  ['header value: DEL and C1 (U+007F, U+0085)', { h: 'a\u007fb\u0085' }],
  ['header value: lone surrogate', { h: 'a\ud800b' }],
  ['header value: tab', { h: 'a\tb' }],
  ['header value: emoji and accents', { h: '😀 ünïcødé' }],
  ['header value: empty string', { h: '' }],
  ['header value: 40,959 bytes (all headers at the portable limit)', { h: 'v'.repeat(40_959) }],
  ['header value: 40,960 bytes (1 byte over)', { h: 'v'.repeat(40_960) }],
  ['header value: 70,000 bytes', { h: 'v'.repeat(70_000) }],
  ['header value: number', { h: 1 }],
  ['header value: null', { h: null }],
  ['header value: object', { h: { a: 1 } }],
  ['header value: array', { h: ['a'] }],
  ['header name: 300 characters', { ['n'.repeat(300)]: 'x' }],
  ['header name: 128 characters (the limit)', { ['n'.repeat(128)]: 'x' }],
  ['header name: control character', { 'a\u0001': 'x' }],
  ['header name: emoji', { '😀': 'x' }],
  ['header name: empty', { '': 'x' }],
  ['header name: __proto__', JSON.parse('{"__proto__": "x"}') as Record<string, unknown>],
  ['header name: busbar- prefix', { 'busbar-id': 'x' }],
  ['headers: 200 of them', Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`h${i}`, `v${i}`]))],
  [
    'headers: 3 x 13,000 bytes (39 KB together)',
    { a: 'a'.repeat(13_000), b: 'b'.repeat(13_000), c: 'c'.repeat(13_000) },
  ],
  [
    'headers: 3 x 20,000 bytes (60 KB together)',
    { a: 'a'.repeat(20_000), b: 'b'.repeat(20_000), c: 'c'.repeat(20_000) },
  ],
];

export const MUST_REJECT = [
  'header value: control character U+0001',
  'header value: line feed',
  'header value: carriage return',
  'header value: NUL',
  'header value: DEL and C1 (U+007F, U+0085)',
  'header value: lone surrogate',
  'header value: tab',
  'header value: 40,960 bytes (1 byte over)',
  'headers: 3 x 20,000 bytes (60 KB together)',
  'header value: 70,000 bytes',
  'header value: number',
  'header value: null',
  'header value: object',
  'header value: array',
  'header name: 300 characters',
  'header name: control character',
  'header name: emoji',
  'header name: empty',
  'header name: __proto__',
  'header name: busbar- prefix',
];

export const MUST_DELIVER = [
  'header value: emoji and accents',
  'header value: empty string',
  'header value: 40,959 bytes (all headers at the portable limit)',
  'headers: 3 x 13,000 bytes (39 KB together)',
  'header name: 128 characters (the limit)',
  'headers: 200 of them',
];

export const TOPIC_CASES: [string, unknown][] = [
  ['topic: empty', ''],
  ['topic: space', 'a.b c'],
  ['topic: slash (MQTT level separator)', 'a/b'],
  ['topic: plus (MQTT wildcard)', 'a.+'],
  ["topic: '>' (NATS wildcard)", 'a.>'],
  ["topic: '#' not last", 'a.#.b'],
  ["topic: '*' inside a segment", 'a.b*'],
  ["topic: '$' first (MQTT/NATS system)", '$SYS.a'],
  ["topic: 'amq.' prefix (RabbitMQ reserved)", 'amq.a'],
  ['topic: empty segment', 'a..b'],
  ['topic: leading dot', '.a'],
  ['topic: trailing dot', 'a.'],
  ['topic: 250 characters', `a.${'b'.repeat(248)}`],
  ['topic: 300 characters', 't'.repeat(300)],
  ['topic: NUL', 'a\u0000b'],
  ['topic: line feed', 'a\nb'],
  ['topic: non-ASCII', 'ä.b'],
  ['topic: a number', 42],
  ['topic: null', null],
];

export const TOPICS_REJECTED_EVERYWHERE = TOPIC_CASES.map(([label]) => label).filter(
  (label) => label !== "topic: 'amq.' prefix (RabbitMQ reserved)",
);

export const OPTION_CASES: [string, Record<string, unknown>][] = [
  ['retry delay: negative', { retry: { initialDelayMs: -1 } }],
  ['retry delay: over 2^31-1 ms', { retry: { maxDelayMs: 2 ** 31 } }],
  ['retry delay: NaN', { retry: { initialDelayMs: Number.NaN } }],
  ['retry delay: Infinity', { retry: { maxDelayMs: Number.POSITIVE_INFINITY } }],
  ['handler timeout: over 2^31-1 ms', { handlerTimeoutMs: 2 ** 31 }],
  ['concurrency: 0', { concurrency: 0 }],
  ['prefetch below concurrency', { concurrency: 10, prefetch: 5 }],
  ['maxAttempts: 0', { retry: { maxAttempts: 0 } }],
];

/** Values handlers throw that are not Errors; every transport must retry and dead-letter each one. */
export const THROWABLES: [string, () => unknown][] = [
  ['null', () => null],
  ['undefined', () => undefined],
  ['a number', () => 42],
  ['a string', () => 'out of stock'],
  ['a null-prototype object', () => Object.create(null)],
  [
    'an Error whose message getter throws',
    () => {
      const e = new Error('x');
      Object.defineProperty(e, 'message', {
        get() {
          throw new Error('getter');
        },
      });
      return e;
    },
  ],
  [
    'a Proxy that throws on every trap',
    () =>
      new Proxy(
        {},
        new Proxy(
          {},
          {
            get() {
              return () => {
                throw new Error('trap');
              };
            },
          },
        ),
      ),
  ],
];
