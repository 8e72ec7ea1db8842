import { BusbarError } from '@busbar/core';
import { expect, it } from 'vitest';
import type { Suite } from './context.js';

/**
 * A transport's capabilities are claims the suite checks: each claimed one selects its section (ordering,
 * wildcards, durable groups), and here the transport must report exactly what the test file declared, and
 * refuse what it does not claim where that is observable.
 */
export function capabilityTests(s: Suite): void {
  it('reports the capabilities it claims', async () => {
    const bus = await s.bus();
    const { durableGroups, ordering, wildcards, requestReply } = bus.capabilities;
    expect({ durableGroups, ordering, wildcards, requestReply }).toEqual({
      durableGroups: s.caps.durableGroups,
      ordering: s.caps.ordering,
      wildcards: s.caps.wildcards,
      requestReply: s.caps.requestReply ?? false,
    });
  });

  if (!s.caps.requestReply) {
    it('refuses request/reply it cannot serve with UnsupportedError', async () => {
      const bus = await s.bus();
      const request = await bus.request(s.topic('rr'), 1).catch((e: unknown) => e);
      expect(BusbarError.is(request, 'BUSBAR_UNSUPPORTED'), String(request)).toBe(true);
      const respond = await bus.respond(s.topic('rr'), () => 1).catch((e: unknown) => e);
      expect(BusbarError.is(respond, 'BUSBAR_UNSUPPORTED'), String(respond)).toBe(true);
    });
  }

  if (!s.caps.wildcards) {
    it('refuses a wildcard subscription it cannot serve with UnsupportedError', async () => {
      const bus = await s.bus();
      for (const pattern of [`${s.topic('wild')}.*`, `${s.topic('wild')}.#`]) {
        const error = await bus.subscribe(pattern, () => undefined, { group: s.group() }).catch((e: unknown) => e);
        expect(BusbarError.is(error, 'BUSBAR_UNSUPPORTED'), String(error)).toBe(true);
      }
    });
  }
}
