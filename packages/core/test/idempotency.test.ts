import { MemoryIdempotencyStore } from '@busbar/core';
import { describeIdempotencyStore } from '@busbar/testing';

// One shared map stands for the shared backend two consumers would use.
const shared = new MemoryIdempotencyStore();
describeIdempotencyStore('memory', () => shared);
