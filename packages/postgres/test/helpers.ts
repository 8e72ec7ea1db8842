import { randomBytes } from 'node:crypto';
import { brokerUrls } from '@busbar/testing';
import pg from 'pg';
import { migrate } from '../src/index.js';

/** A schema of its own per test file, so parallel runs on the shared database never collide. */
export interface TestDb {
  readonly pool: pg.Pool;
  readonly schema: string;
  /** `schema.name`, created with the busbar migration. */
  table(name: string): string;
  /** Creates fresh outbox + idempotency tables and returns their names. */
  tables(): Promise<{ outboxTable: string; idempotencyTable: string }>;
  close(): Promise<void>;
}

export async function testDb(max = 10): Promise<TestDb> {
  const schema = `bbt_${randomBytes(6).toString('hex')}`;
  const pool = new pg.Pool({ connectionString: brokerUrls.postgres, max });
  pool.on('error', () => undefined);
  await pool.query(`CREATE SCHEMA ${schema}`);
  let n = 0;
  return {
    pool,
    schema,
    table: (name) => `${schema}.${name}`,
    async tables() {
      n++;
      const names = { outboxTable: `${schema}.outbox_${n}`, idempotencyTable: `${schema}.idem_${n}` };
      await migrate(pool, names);
      return names;
    },
    async close() {
      await pool.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => undefined);
      await pool.end();
    },
  };
}

/** Runs `fn` in a transaction on one client; commits unless it throws. */
export async function tx<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
