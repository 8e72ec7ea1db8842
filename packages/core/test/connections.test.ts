import { type ConnectionEvent, channels, connect, silentLogger } from '@busbar/core';
import { afterEach, describe, expect, it } from 'vitest';
import { Connections } from '../src/connections.js';

const seen: ConnectionEvent[] = [];
const listen = (message: unknown) => void seen.push(message as ConnectionEvent);

describe('busbar:connection events', () => {
  afterEach(() => {
    channels.connection.unsubscribe(listen);
    seen.length = 0;
  });

  it('a forgotten connection is reported closed once; an unknown one is not reported', () => {
    channels.connection.subscribe(listen);
    const c = new Connections('test', silentLogger, []);
    c.report('sub-a', 'up');
    c.forget('sub-a');
    c.forget('sub-a');
    c.forget('never-seen');
    expect(seen.map((e) => `${e.connection}:${e.state}`)).toEqual(['sub-a:up', 'sub-a:closed']);
    expect(c.list()).toEqual([]);
  });

  it('end() reports every connection closed once, and nothing after it; health still lists them', () => {
    channels.connection.subscribe(listen);
    const c = new Connections('test', silentLogger, []);
    c.report('a', 'up');
    c.report('b', 'reconnecting');
    c.end();
    c.report('a', 'down');
    c.end();
    expect(seen.map((e) => `${e.connection}:${e.state}`)).toEqual(['a:up', 'b:reconnecting', 'a:closed', 'b:closed']);
    expect(c.list().map((h) => `${h.name}:${h.state}`)).toEqual(['a:down', 'b:reconnecting']);
  });

  it('two buses of one transport tell their events apart; a closed bus ends with closed', async () => {
    channels.connection.subscribe(listen);
    const first = await connect({ url: 'memory://conn-events', logger: silentLogger });
    const second = await connect({ url: 'memory://conn-events', logger: silentLogger });
    await first.close();
    const ids = [...new Set(seen.map((e) => e.bus))];
    expect(ids).toHaveLength(2);
    const firstEvents = seen.filter((e) => e.bus === ids[0]).map((e) => e.state);
    expect(firstEvents.at(-1)).toBe('closed');
    expect(seen.filter((e) => e.bus === ids[1]).map((e) => e.state)).not.toContain('closed');
    await second.close();
    expect(seen.filter((e) => e.bus === ids[1]).at(-1)?.state).toBe('closed');
  });
});
