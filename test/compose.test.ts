import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/**
 * docker-compose.yml is the Docker way to get the brokers `scripts/brokers up` starts natively: it must stay a
 * valid compose file (dclint) and offer the same services on the same host ports, or tests pass on one setup
 * and fail on the other.
 */
const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const COMPOSE = join(ROOT, 'docker-compose.yml');

interface LintMessage {
  readonly rule: string;
  readonly type: 'error' | 'warning';
  readonly message: string;
  readonly line: number;
}

/** service -> port, from the `port_of` case in scripts/brokers. */
function brokersScriptPorts(): Map<string, number> {
  const script = readFileSync(join(ROOT, 'scripts', 'brokers'), 'utf8');
  const body = script.slice(script.indexOf('port_of()'), script.indexOf('esac', script.indexOf('port_of()')));
  return new Map([...body.matchAll(/([a-z]+)\)\s*echo\s+(\d+)/g)].map((m) => [m[1] ?? '', Number(m[2])]));
}

/** service -> published host ports, read line by line (the linter below keeps the file in this shape). */
function composePorts(): Map<string, number[]> {
  const ports = new Map<string, number[]>();
  let service = '';
  let inServices = false;
  let inPorts = false;
  for (const line of readFileSync(COMPOSE, 'utf8').split('\n')) {
    if (/^\S/.test(line)) inServices = line.startsWith('services:');
    if (!inServices) continue;
    const svc = /^ {2}([\w-]+):\s*$/.exec(line);
    if (svc) {
      service = svc[1] ?? '';
      ports.set(service, []);
      inPorts = false;
      continue;
    }
    if (/^ {4}\S/.test(line)) inPorts = /^ {4}ports:/.test(line);
    if (!inPorts) continue;
    // Block items (`- '127.0.0.1:5432:5432'`) or a flow list (`ports: ["127.0.0.1:5432:5432"]`).
    const items = line.includes('[') ? line.slice(line.indexOf('[') + 1, line.lastIndexOf(']')).split(',') : [line];
    for (const item of items) {
      const port = /^\s*(?:-\s*)?['"]?(?:[\d.]+:)?(\d+):\d+['"]?\s*$/.exec(item);
      if (port) ports.get(service)?.push(Number(port[1]));
    }
  }
  return ports;
}

describe('docker-compose.yml', () => {
  it('passes dclint with no errors', async () => {
    const bin = join(ROOT, 'node_modules', 'dclint', 'bin', 'dclint.cjs');
    // dclint exits non-zero when it finds errors; the JSON report is on stdout either way.
    const { stdout } = await run(process.execPath, [bin, '--formatter', 'json', '--color', 'false', COMPOSE], {
      cwd: ROOT,
      timeout: 25_000,
    }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
    const reports = JSON.parse(stdout) as { messages: LintMessage[] }[];
    const messages = reports.flatMap((r) => r.messages);
    const errors = messages.filter((m) => m.type === 'error');
    expect(errors.map((m) => `${m.line}: ${m.rule}: ${m.message}`)).toEqual([]);
  });

  it('publishes the same services on the same host ports as scripts/brokers', () => {
    const expected = brokersScriptPorts();
    expect(expected.size).toBe(6);
    const actual = composePorts();
    expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [service, port] of expected) expect(actual.get(service), service).toEqual([port]);
  });

  it('runs the Kafka version scripts/kafka/kafka.sh starts', () => {
    const script = readFileSync(join(ROOT, 'scripts', 'kafka', 'kafka.sh'), 'utf8');
    const version = /KAFKA_VERSION="\$\{BUSBAR_KAFKA_VERSION:-([\d.]+)\}"/.exec(script)?.[1];
    expect(version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(readFileSync(COMPOSE, 'utf8')).toContain(`image: apache/kafka:${version}\n`);
  });

  it('gives every service a healthcheck, so `docker compose up --wait` waits for all of them', () => {
    const text = readFileSync(COMPOSE, 'utf8');
    const services = [...composePorts().keys()];
    const blocks = text.split(/^ {2}(?=[\w-]+:\s*$)/m).slice(1);
    expect(blocks.length).toBe(services.length);
    for (const block of blocks) expect(block, block.split(':')[0]).toMatch(/^ {4}healthcheck:\s*$\n\s+test:/m);
  });
});
