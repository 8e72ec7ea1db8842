import { defineTopic } from '@busbar/core';
import { z } from 'zod';

const order = z.object({
  runId: z.string(),
  orderId: z.string(),
  total: z.number().positive(),
  currency: z.string().length(3),
});

export type Order = z.infer<typeof order>;

/** Payloads are checked against the schema before publishing and after receiving. */
export const OrderCreated = defineTopic('orders.created', order);
