import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { reachable, sleep } from '@busbar/testing';

const run = promisify(execFile);

/** The jars scripts/kafka/kafka.sh fetched (`kafka.sh fetch`): the same broker the shared one runs. */
const VERSION = process.env.BUSBAR_KAFKA_VERSION ?? '3.9.1';
const LIBS = join(process.env.BUSBAR_CACHE ?? join(homedir(), '.cache', 'busbar'), `kafka-${VERSION}`, 'libs');
const JAVA = process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';

/**
 * True when private KRaft nodes can run here (the jars and a JVM). With CI set, missing ones are a failure;
 * locally the caller skips with the reason printed.
 */
export function kraftAvailable(what: string): boolean {
  let reason: string | undefined;
  if (!existsSync(join(LIBS, '.complete')))
    reason = `no Kafka ${VERSION} jars in ${LIBS} (bash scripts/kafka/kafka.sh fetch)`;
  else if (spawnSync(JAVA, ['-version'], { stdio: 'ignore', timeout: 20_000 }).status !== 0)
    reason = 'java does not run';
  if (reason === undefined) return true;
  if (process.env.CI === 'true' || process.env.CI === '1') throw new Error(`${what}: ${reason} and CI is set`);
  console.warn(`[busbar] skipping ${what}: ${reason}`);
  return false;
}

const LOG4J = (dir: string) => `log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${dir}/kafka.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
`;

/**
 * A random KRaft cluster id (what `kafka-storage random-uuid` prints: 16 bytes, URL-safe base64). Like Kafka's
 * own `Uuid.randomUuid()`, never one that starts with '-': the storage tool's argument parser reads such an id
 * as an option (one format in 64 failed so in CI).
 */
export function clusterId(): string {
  for (;;) {
    const id = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/**
 * One KRaft process (combined broker + controller) in `dir`, started with `java` on the fetched jars like
 * kafka.sh does, as a child of the test process so that tests can SIGKILL, SIGSTOP and restart it.
 * `readyPort` is a client listener: the node is up once "Kafka Server started" is logged and it answers.
 */
export class KraftNode {
  #proc: ChildProcess | undefined;

  constructor(
    readonly dir: string,
    readonly properties: Record<string, string | number | boolean>,
    readonly readyPort: number,
  ) {}

  get pid(): number | undefined {
    return this.#proc?.pid;
  }

  get running(): boolean {
    return this.#proc !== undefined && this.#proc.exitCode === null && this.#proc.signalCode === null;
  }

  /** Writes the config and formats the log dir (`extra`: e.g. `--add-scram ...`). */
  async format(id: string, extra: readonly string[] = []): Promise<void> {
    const text = Object.entries(this.properties)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n');
    writeFileSync(join(this.dir, 'server.properties'), `${text}\n`);
    writeFileSync(join(this.dir, 'log4j.properties'), LOG4J(this.dir));
    await run(
      JAVA,
      [
        `-Dlog4j.configuration=file:${this.dir}/log4j.properties`,
        '-cp',
        `${LIBS}/*`,
        'kafka.tools.StorageTool',
        'format',
        `--cluster-id=${id}`,
        '-c',
        join(this.dir, 'server.properties'),
        ...extra,
      ],
      { timeout: 120_000 },
    );
  }

  /** Starts the JVM and waits (at most `timeoutMs`) until it serves clients. */
  async start(timeoutMs = 120_000): Promise<void> {
    if (this.running) return;
    writeFileSync(join(this.dir, 'kafka.log'), '');
    const out = openSync(join(this.dir, 'kafka.out'), 'a');
    this.#proc = spawn(
      JAVA,
      [
        '-Xms128m',
        '-Xmx384m',
        '-XX:+UseSerialGC',
        '-XX:TieredStopAtLevel=1',
        '-Djava.awt.headless=true',
        `-Dlog4j.configuration=file:${this.dir}/log4j.properties`,
        `-Dkafka.logs.dir=${this.dir}`,
        '-cp',
        `${LIBS}/*`,
        'kafka.Kafka',
        join(this.dir, 'server.properties'),
      ],
      { stdio: ['ignore', out, out] },
    );
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`Kafka node in ${this.dir} exited during startup:\n${this.tail()}`);
      const log = readFileSync(join(this.dir, 'kafka.log'), 'utf8');
      if (log.includes('Kafka Server started') && (await reachable(`tcp://127.0.0.1:${this.readyPort}`, 1_000))) return;
      await sleep(250);
    }
    throw new Error(`Kafka node in ${this.dir} not ready after ${timeoutMs} ms:\n${this.tail()}`);
  }

  /** SIGTERM (a controlled shutdown: leadership moves first), then SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<void> {
    const proc = this.#proc;
    if (proc === undefined || !this.running) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGCONT');
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  /** SIGKILL: the node dies without a word to the cluster. */
  async kill(): Promise<void> {
    const proc = this.#proc;
    if (proc === undefined || !this.running) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGKILL');
    await exited;
  }

  pause(): void {
    this.#proc?.kill('SIGSTOP');
  }

  resume(): void {
    this.#proc?.kill('SIGCONT');
  }

  /** The end of the node's log, for failure messages. */
  tail(lines = 30): string {
    const read = (name: string) => {
      try {
        return readFileSync(join(this.dir, name), 'utf8').split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    };
    return `${read('kafka.out')}\n${read('kafka.log')}`;
  }
}
