/**
 * The scale test's group members are child processes (`lib/scale-member.js`), steered over Node's IPC
 * channel: the parent starts their subscriptions together, sums their progress and stops them.
 */
import { type ChildProcess, fork } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ScaleBroker } from './scale-brokers.js';

export interface MemberSpec {
  readonly broker: ScaleBroker;
  readonly url: string;
  readonly topic: string;
  readonly group: string;
  /** MQTT session family of this process (see `connectOptions`). */
  readonly member: string;
  /** Messages this member is expected to handle: RSS and live heap are sampled at 10, 50 and 90% of it. */
  readonly expect?: number;
}

export type ToMember = { readonly type: 'go' } | { readonly type: 'stop' };

export interface MemberReport {
  readonly seen: number;
  /** Epoch ms (sub-ms precision, comparable across processes) of the first and last handled message. */
  readonly firstAt: number;
  readonly lastAt: number;
  /** Client CPU over the whole subscription, ms. */
  readonly cpuMs: number;
  readonly baselineMb: number;
  readonly peakMb: number;
  readonly atMb: readonly number[];
  readonly liveMb: readonly number[];
}

export type FromMember =
  | { readonly type: 'ready' }
  | { readonly type: 'subscribed' }
  | { readonly type: 'progress'; readonly seen: number }
  | ({ readonly type: 'done' } & MemberReport);

/** Epoch milliseconds with performance.now()'s resolution: timestamps of different processes compare. */
export const epochMs = () => performance.timeOrigin + performance.now();

/** The parent's handle on one member process. */
export class Member {
  seen = 0;
  readonly #proc: ChildProcess;
  readonly #waiters = new Map<FromMember['type'], (m: FromMember) => void>();
  readonly #exited: Promise<number | null>;

  constructor(distDir: string, spec: MemberSpec) {
    this.#proc = fork(path.join(distDir, 'lib', 'scale-member.js'), [JSON.stringify(spec)], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#proc.on('message', (m: FromMember) => {
      if (m.type === 'progress') this.seen = m.seen;
      this.#waiters.get(m.type)?.(m);
    });
    this.#exited = new Promise((resolve) => this.#proc.once('exit', resolve));
  }

  /** The next message of `type`; rejects if the process exits first. */
  next<T extends FromMember['type']>(type: T): Promise<Extract<FromMember, { type: T }>> {
    return new Promise((resolve, reject) => {
      this.#waiters.set(type, (m) => resolve(m as Extract<FromMember, { type: T }>));
      void this.#exited.then((code) => reject(new Error(`member exited with ${code} before '${type}'`)));
    });
  }

  send(message: ToMember): void {
    this.#proc.send(message);
  }

  async stop(): Promise<MemberReport> {
    const done = this.next('done');
    this.send({ type: 'stop' });
    const report = await done;
    await this.#exited;
    return report;
  }

  kill(): void {
    if (this.#proc.exitCode === null) this.#proc.kill('SIGKILL');
  }
}
