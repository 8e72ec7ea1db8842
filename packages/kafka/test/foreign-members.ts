import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** kcat (librdkafka) is the foreign consumer of the group tests. With CI set, a missing kcat is a failure. */
export function kcatAvailable(): boolean {
  try {
    execFileSync('kcat', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env.CI === 'true' || process.env.CI === '1') {
      throw new Error('kcat is not installed and CI is set: `apt-get install -y kcat`');
    }
    console.warn('[busbar] skipping the kcat group tests: kcat is not installed (`apt-get install -y kcat`)');
    return false;
  }
}

export interface MemberRecord {
  readonly partition: number;
  readonly offset: number;
  readonly value: string;
}

export interface ForeignMember {
  readonly records: MemberRecord[];
  /** What the member wrote to stderr (errors, group events), for failure messages. */
  readonly log: string[];
  /** Resolves with the exit code once the member has ended. */
  readonly exited: Promise<number | null>;
  /** Ends the member (SIGTERM, then SIGKILL after 15 s). */
  stop(): Promise<number | null>;
}

/**
 * A librdkafka balanced consumer (`kcat -G`) in `group` with the given `partition.assignment.strategy`,
 * printing `partition \t offset \t value` per record (unbuffered), committing automatically as librdkafka does.
 * With `count` it leaves the group cleanly after printing that many records: stopped by a signal, kcat drops a
 * record it already polled (and whose offset librdkafka stored) without printing it, a loss of kcat's own.
 * A group without offsets starts at the beginning (`latest`, looked up after the rebalance, would skip what
 * busbar published meanwhile).
 */
export function kcatConsumer(broker: string, group: string, topic: string, strategy: string, count = 0): ForeignMember {
  return member('kcat', [
    '-b',
    broker,
    '-G',
    group,
    '-X',
    `partition.assignment.strategy=${strategy}`,
    '-X',
    'session.timeout.ms=6000',
    '-X',
    'heartbeat.interval.ms=300',
    '-X',
    'auto.commit.interval.ms=200',
    '-X',
    'auto.offset.reset=earliest',
    ...(count > 0 ? ['-c', String(count)] : []),
    '-u',
    '-f',
    '%p\t%o\t%s\n',
    topic,
  ]);
}

/** A foreign group member as a child process printing `partition \t offset \t value` lines. */
function member(command: string, args: string[]): ForeignMember {
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const records: MemberRecord[] = [];
  const log: string[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const [partition, offset, ...value] = line.split('\t');
    records.push({ partition: Number(partition), offset: Number(offset), value: value.join('\t') });
  });
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => log.push(line));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    records,
    log,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** The Kafka jars scripts/kafka/kafka.sh fetches (the same the broker runs on): kafka-clients is among them. */
const KAFKA_LIBS = join(process.env.BUSBAR_CACHE ?? join(homedir(), '.cache', 'busbar'), 'kafka-3.9.1', 'libs');

/** The Java client needs java and the Kafka jars; with CI set, missing ones are a failure. */
export function javaAvailable(): boolean {
  try {
    execFileSync('java', ['-version'], { stdio: 'ignore' });
    if (existsSync(join(KAFKA_LIBS, 'kafka-clients-3.9.1.jar'))) return true;
  } catch {
    // fall through
  }
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error(`java or the Kafka jars (${KAFKA_LIBS}) are missing and CI is set: scripts/kafka/kafka.sh fetch`);
  }
  console.warn('[busbar] skipping the Java group test: java or the Kafka jars are missing');
  return false;
}

/**
 * A plain Java KafkaConsumer (fixtures/GroupMember.java, kafka-clients 3.9.1) in `group`, with the Java
 * default assignors (range, cooperative-sticky) unless `strategy` names a class; it commits what it printed
 * and leaves after `count` records.
 */
export function javaConsumer(broker: string, group: string, topic: string, count: number, strategy?: string) {
  const source = join(import.meta.dirname, 'fixtures', 'GroupMember.java');
  const args = ['-cp', join(KAFKA_LIBS, '*'), source, broker, group, topic, String(count)];
  return member('java', strategy ? [...args, strategy] : args);
}
