/**
 * The smallest slice of `pg` this package needs, so any `pg` 8 `Client`,
 * `Pool` or `PoolClient` fits without busbar re-exporting pg's types.
 */

export interface QueryResultLike {
  readonly rows: readonly unknown[];
  readonly rowCount: number | null;
}

/** Anything with pg's `query(text, values)`: a `Client`, a `PoolClient` or a `Pool`. */
export interface SqlClient {
  query(text: string, values?: unknown[]): Promise<QueryResultLike>;
}

export interface NotificationLike {
  readonly channel: string;
  readonly payload?: string | undefined;
}

/** A client checked out of a pool (pg's `PoolClient`). */
export interface PooledClient extends SqlClient {
  release(destroy?: boolean | Error): void;
  on(event: 'notification', listener: (message: NotificationLike) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
  removeAllListeners(event?: string): unknown;
}

/** A connection pool (pg's `Pool`). */
export interface PoolLike extends SqlClient {
  connect(): Promise<PooledClient>;
  end(): Promise<void>;
}
