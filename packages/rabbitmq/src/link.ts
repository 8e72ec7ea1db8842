import type { TransportContext } from '@busbar/core/transport';
import { redactUrl, safeDecode, sanitizeError } from '@busbar/core/transport';
import amqplib, { type ChannelModel, type RecoveringChannelModel } from 'amqplib';
import { CLOSE_STEP_MS, settledWithin } from './closing.js';
import { isVhostRefused, notAmqp, toBusbarError } from './errors.js';
import { destroySocket, endpoints, frameMax } from './internals.js';
import type { ResolvedOptions } from './options.js';

type Listener = (model: ChannelModel) => void;

/**
 * One AMQP connection kept alive by amqplib's own recovery
 * (`connect(url, { recovery })`): amqplib reconnects with backoff; this class
 * only tells its users when a fresh connection is up so they re-create their
 * channels, topology and consumers (amqplib restores the connection only).
 */
export class Link {
  readonly name: string;
  readonly #context: TransportContext<ResolvedOptions>;
  readonly #listeners = new Set<Listener>();
  #recovering: RecoveringChannelModel | undefined;
  #model: ChannelModel | undefined;
  #lastError: unknown;
  #closed = false;
  #silent = false;

  constructor(name: string, context: TransportContext<ResolvedOptions>) {
    this.name = name;
    this.#context = context;
  }

  /** The live connection, or undefined while (re)connecting. */
  get model(): ChannelModel | undefined {
    return this.#model;
  }

  /** True once a close-time round trip went unanswered: the rest of the close does not wait for the broker. */
  get silent(): boolean {
    return this.#silent || !this.#model;
  }

  /**
   * Waits for a close-time round trip on this connection, at most one step (none once the broker is known
   * silent or the connection is down). Resolves false when it went unanswered.
   */
  async closeStep(promise: Promise<unknown>): Promise<boolean> {
    const answered = await settledWithin(promise, this.silent ? 0 : CLOSE_STEP_MS);
    if (!answered) this.#silent = true;
    return answered;
  }

  /** The negotiated frame_max of the live connection, or 0 if unknown. */
  get frameMax(): number {
    return this.#model ? frameMax(this.#model) : 0;
  }

  /** The live connection; waits up to `timeoutMs` while reconnecting, then rejects. */
  async current(timeoutMs: number): Promise<ChannelModel> {
    if (this.#model) return this.#model;
    if (this.#closed) throw new Error('connection closed');
    return new Promise<ChannelModel>((resolve, reject) => {
      const off = this.onUp((model) => {
        clearTimeout(timer);
        off();
        resolve(model);
      });
      const timer = setTimeout(() => {
        off();
        const why = sanitizeError(this.#lastError ?? new Error('no answer'), this.#context.secrets).message;
        reject(new Error(`not connected to RabbitMQ within ${timeoutMs} ms (${why})`));
      }, timeoutMs);
    });
  }

  /** Called with every new connection (the first one too, if added before it). */
  onUp(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Opens the connection; rejects after the connect timeout or at once on a refused login. */
  async open(): Promise<void> {
    const { url, options, bus } = this.#context;
    // `amqp://u:p@h1:5672,h2:5672/vhost`: every connect and reconnect after a lost or refused connection
    // goes to the next node of the list.
    const nodes = endpoints(
      {
        protocol: url.protocol.slice(0, -1),
        username: decodeURIComponent(url.username),
        password: decodeURIComponent(url.password),
        vhost: url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : '/',
        heartbeat: options.heartbeatSeconds,
      },
      this.#context.hosts.length > 0 ? this.#context.hosts : [url.host],
      url.protocol === 'amqps:' ? 5671 : 5672,
    );
    const recovering = (await amqplib.connect(nodes.options, {
      ...(options.tls ?? {}),
      noDelay: true,
      timeout: bus.connectTimeoutMs,
      clientProperties: { connection_name: `${bus.name}-${this.name}` },
      recovery: {
        initialDelay: options.reconnectInitialDelayMs,
        maxDelay: Math.max(options.reconnectInitialDelayMs, options.reconnectMaxDelayMs),
        maxRetries: Number.POSITIVE_INFINITY,
        waitForConnect: false,
      },
    })) as RecoveringChannelModel;
    this.#recovering = recovering;
    this.#context.reportState(this.name, 'connecting');
    recovering.on('connect', (model: ChannelModel) => this.#up(model));
    recovering.on('disconnect', (error: Error) => {
      nodes.next();
      this.#model = undefined;
      this.#lastError = error;
      if (!this.#closed) this.#context.reportState(this.name, 'reconnecting', error);
    });
    recovering.on('connect-failed', (error: Error) => {
      nodes.next();
      this.#lastError = error;
      if (!this.#closed) this.#context.reportState(this.name, 'reconnecting', error);
    });
    recovering.on('reconnect-failed', (error: Error) => {
      this.#lastError = error;
      if (!this.#closed) this.#context.reportState(this.name, 'down', error);
    });
    recovering.on('blocked', (reason: string) => {
      this.#context.logger.warn(`RabbitMQ blocked connection '${this.name}' (publishes wait): ${reason}`);
    });
    recovering.on('unblocked', () => this.#context.logger.info(`RabbitMQ unblocked connection '${this.name}'`));
    recovering.on('error', (error: Error) => {
      this.#lastError = error;
      this.#context.logger.debug(`Connection '${this.name}' error`, {
        error: sanitizeError(error, this.#context.secrets),
      });
    });
    await this.#waitFirst(recovering);
  }

  #waitFirst(recovering: RecoveringChannelModel): Promise<void> {
    const where = redactUrl(this.#context.url);
    return new Promise<void>((resolve, reject) => {
      const fail = (error: unknown) => {
        clearTimeout(timer);
        recovering.removeListener('connect-failed', onFailed);
        // Nothing failed and nothing answered: a broker that accepts TCP but not AMQP (one at its file
        // descriptor limit does that) or a network that drops the handshake.
        const silent = new Error(`no answer within connectTimeoutMs (${this.#context.bus.connectTimeoutMs} ms)`);
        const cause = sanitizeError(error ?? silent, this.#context.secrets);
        const why = isVhostRefused(cause) ? this.#vhostRefusal() : (notAmqp(cause) ?? cause.message);
        reject(Object.assign(new Error(`Could not connect to ${where}: ${why}`), { cause }));
      };
      // A refused login or vhost, a certificate that fails verification and a server that answers in another
      // protocol fail the same way again: give up at once instead of reconnecting until the connect timeout.
      const onFailed = (error: Error) => {
        if (!toBusbarError(error, { what: '', op: 'connect', secrets: this.#context.secrets }).retryable) fail(error);
      };
      const timer = setTimeout(() => fail(this.#lastError), this.#context.bus.connectTimeoutMs);
      recovering.on('connect-failed', onFailed);
      recovering.waitForConnect().then(() => {
        clearTimeout(timer);
        recovering.removeListener('connect-failed', onFailed);
        resolve();
      }, fail);
    });
  }

  /** amqplib loses the broker's reason for a refused vhost: say what it can only be. */
  #vhostRefusal(): string {
    const { url } = this.#context;
    const vhost = url.pathname.length > 1 ? safeDecode(url.pathname.slice(1)) : '/';
    return `the broker refused vhost '${vhost}' (NOT_ALLOWED - vhost does not exist, or user '${safeDecode(url.username)}' has no permissions on it)`;
  }

  #up(model: ChannelModel): void {
    if (this.#closed) return;
    this.#model = model;
    // A fresh connection answers again: close-time round trips are worth waiting for.
    this.#silent = false;
    this.#context.reportState(this.name, 'up');
    for (const listener of this.#listeners) {
      try {
        listener(model);
      } catch (error) {
        this.#context.logger.error(`Restoring '${this.name}' after a reconnect failed`, {
          error: sanitizeError(error, this.#context.secrets),
        });
      }
    }
  }

  async close(deadline = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.#closed) return;
    const model = this.#model;
    const silent = this.silent || deadline <= Date.now();
    this.#closed = true;
    this.#listeners.clear();
    const closing = this.#recovering?.close() ?? Promise.resolve();
    // connection.close waits for close-ok, which a silent broker never sends (amqplib would hold the
    // socket until two heartbeats are missed): then the socket is destroyed instead.
    const wait = silent ? 0 : Math.min(CLOSE_STEP_MS, deadline - Date.now());
    if (!(await settledWithin(closing, wait)) && model) destroySocket(model);
    this.#model = undefined;
    this.#context.reportState(this.name, 'down');
  }
}
