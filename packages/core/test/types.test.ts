import { type Bus, connect, defineTopic, type Message, type StandardSchemaV1 } from '@busbar/core';
import { describe, expectTypeOf, it } from 'vitest';

/**
 * Typed channels: the schema of `defineTopic` types `publish` and the handler of `subscribe` without casts,
 * and a wrong payload is a compile error. `npm run typecheck` (tsc over the tests) fails when a
 * `@ts-expect-error` below stops being an error; the runtime part only checks the calls work.
 */
const orderSchema: StandardSchemaV1<unknown, { orderId: string; total: number }> = {
  '~standard': {
    version: 1,
    vendor: 'test',
    validate: (value) => ({ value: value as { orderId: string; total: number } }),
  },
};
const OrderCreated = defineTopic('types.order.created', orderSchema);

async function typed(bus: Bus): Promise<void> {
  await bus.publish(OrderCreated, { orderId: 'o-1', total: 1 });
  // @ts-expect-error a missing field is a compile error
  await bus.publish(OrderCreated, { orderId: 'o-1' });
  // @ts-expect-error a wrong field type is a compile error
  await bus.publish(OrderCreated, { orderId: 1, total: 1 });
  await bus.publishBatch(OrderCreated, [{ payload: { orderId: 'o-2', total: 2 } }]);
  // @ts-expect-error batch entries are typed too
  await bus.publishBatch(OrderCreated, [{ payload: { total: 2 } }]);
  await bus.subscribe(OrderCreated, (message) => {
    expectTypeOf(message).toEqualTypeOf<Message<{ orderId: string; total: number }>>();
    expectTypeOf(message.payload.total).toBeNumber();
    // @ts-expect-error no such field
    void message.payload.missing;
  });
  const plain = defineTopic<{ n: number }>('types.plain');
  await bus.subscribe(plain, (message) => {
    expectTypeOf(message.payload).toEqualTypeOf<{ n: number }>();
  });
  // @ts-expect-error a plain typed topic checks payloads as well
  await bus.publish(plain, { n: 'one' });
  const batch = await bus.subscribeBatch(
    OrderCreated,
    (messages, context) => {
      expectTypeOf(messages).toEqualTypeOf<readonly Message<{ orderId: string; total: number }>[]>();
      const first = messages[0];
      // @ts-expect-error no such field in a batch either
      if (first) void first.payload.missing;
      if (first) context.fail(first, 'bad');
    },
    { group: 'types', batch: { maxSize: 10 } },
  );
  await batch.close();
}

describe('typed channels', () => {
  it('compile and run', async () => {
    const bus = await connect('memory://types');
    await typed(bus);
    await bus.close();
    expectTypeOf(connect).returns.resolves.toEqualTypeOf<Bus>();
  });
});
