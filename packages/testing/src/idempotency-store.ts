export function describeIdempotencyStore(): void { throw new Error('not implemented yet'); }
