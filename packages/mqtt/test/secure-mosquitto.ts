import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, reachable, sleep, type TestPki } from '@busbar/testing';

/** The user the password file knows; its password has `/` and `@`, which a URL must escape. */
export const USER = 'busbar-user';
export const PASSWORD = 'busbar-canary-secret/p@ss';

/** A second user the ACL file lets do anything: it publishes where the test user may not read. */
export const ADMIN = 'busbar-admin';
export const ADMIN_PASSWORD = 'busbar-admin-secret';

const DYNSEC_PLUGIN = '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';

/** Whether Mosquitto's dynamic security plugin (Debian's mosquitto package ships it) is here. */
export const hasDynsec = existsSync(DYNSEC_PLUGIN);

/**
 * The plugin's config: `mosquitto_ctrl dynsec init` makes the file with the user and its hashed password, then
 * the user's role is replaced by one that may publish and subscribe only below `ok/` and the retry topics.
 * The plugin matches a shared subscription's whole filter (`$share/<group>/...`), so those need patterns too.
 */
function writeDynsec(file: string): void {
  execFileSync('mosquitto_ctrl', ['dynsec', 'init', file, USER, PASSWORD], { stdio: 'pipe', timeout: 10_000 });
  const config = JSON.parse(readFileSync(file, 'utf8')) as {
    clients: { username: string; roles: { rolename: string }[] }[];
    roles: unknown[];
  };
  const acls = [`${ALLOWED}/#`, 'busbar-retry/#'].flatMap((topic) => [
    { acltype: 'publishClientSend', topic, allow: true },
    { acltype: 'subscribePattern', topic, allow: true },
    { acltype: 'subscribePattern', topic: `$share/+/${topic}`, allow: true },
  ]);
  config.roles = [{ rolename: 'app', acls }];
  for (const client of config.clients) client.roles = [{ rolename: 'app' }];
  writeFileSync(file, JSON.stringify(config, null, 2));
}

/** Topics the ACL gives the user: everything below `ok/`, read and write; `secret/...` is not granted. */
export const ALLOWED = 'ok';
export const FORBIDDEN = 'secret';

export interface SecurePorts {
  /** Plain TCP, password file + ACL. */
  readonly password: number;
  /** TLS with the PKI's server certificate, password file + ACL. */
  readonly tls: number;
  /** TLS that requires a client certificate from the PKI's CA (anonymous otherwise). */
  readonly mtls: number;
  /** TLS with the expired server certificate. */
  readonly expired: number;
  /** TLS with the certificate for `wrong.example` only. */
  readonly wrongHost: number;
  /**
   * Plain TCP, Mosquitto's dynamic security plugin: the same user and topics, but checked at SUBSCRIBE (SUBACK
   * 0x87), which the ACL file never does (Mosquitto 2.0 grants every SUBSCRIBE and withholds the messages).
   */
  readonly dynsec: number;
}

/**
 * One private Mosquitto with a listener per case (per_listener_settings), started once per test file, in a temp
 * dir, never the shared broker. It logs connections to a file so a test can count connection attempts.
 */
export class SecureMosquitto {
  readonly dir = mkdtempSync(join(tmpdir(), 'busbar-mqtt-secure-'));
  readonly #pki: TestPki;
  #proc: ChildProcess | undefined;
  ports: SecurePorts = { password: 0, tls: 0, mtls: 0, expired: 0, wrongHost: 0, dynsec: 0 };

  constructor(pki: TestPki) {
    this.#pki = pki;
  }

  get logFile(): string {
    return join(this.dir, 'mosquitto.log');
  }

  async start(): Promise<void> {
    const pki = this.#pki;
    // Started as root, Mosquitto drops to its own user: it must be able to read the (test-only) keys and files.
    chmodSync(this.dir, 0o777);
    chmodSync(pki.dir, 0o755);
    for (const file of [pki.server.key, pki.expired.key, pki.wrongHost.key]) chmodSync(file, 0o644);
    const passwd = join(this.dir, 'passwd');
    writeFileSync(passwd, '');
    execFileSync('mosquitto_passwd', ['-b', passwd, USER, PASSWORD], { stdio: 'pipe', timeout: 10_000 });
    const acl = join(this.dir, 'acl');
    execFileSync('mosquitto_passwd', ['-b', passwd, ADMIN, ADMIN_PASSWORD], { stdio: 'pipe', timeout: 10_000 });
    // A group also needs its retry topics (`busbar-retry/<group>/...`).
    writeFileSync(
      acl,
      `user ${USER}\ntopic readwrite ${ALLOWED}/#\ntopic readwrite busbar-retry/#\n\nuser ${ADMIN}\ntopic readwrite #\n`,
    );
    const dynsec = join(this.dir, 'dynsec.json');
    writeDynsec(dynsec);
    for (const file of [passwd, acl, dynsec]) chmodSync(file, 0o666);
    const ports: Record<keyof SecurePorts, number> = {
      password: 0,
      tls: 0,
      mtls: 0,
      expired: 0,
      wrongHost: 0,
      dynsec: 0,
    };
    for (const name of Object.keys(ports) as (keyof SecurePorts)[]) ports[name] = await freePort();
    this.ports = ports;
    const auth = ['allow_anonymous false', `password_file ${passwd}`, `acl_file ${acl}`];
    const tls = (cert: { cert: string; key: string }) => [
      `cafile ${pki.ca}`,
      `certfile ${cert.cert}`,
      `keyfile ${cert.key}`,
    ];
    const conf = join(this.dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      [
        'per_listener_settings true',
        'persistence false',
        'set_tcp_nodelay true',
        `log_dest file ${this.logFile}`,
        'log_type error',
        'log_type warning',
        'log_type notice',
        'log_type information',
        `listener ${ports.password} 127.0.0.1`,
        ...auth,
        `listener ${ports.tls} 127.0.0.1`,
        ...auth,
        ...tls(pki.server),
        `listener ${ports.mtls} 127.0.0.1`,
        'allow_anonymous true',
        ...tls(pki.server),
        'require_certificate true',
        `listener ${ports.expired} 127.0.0.1`,
        'allow_anonymous true',
        ...tls(pki.expired),
        `listener ${ports.wrongHost} 127.0.0.1`,
        'allow_anonymous true',
        ...tls(pki.wrongHost),
        `listener ${ports.dynsec} 127.0.0.1`,
        `plugin ${DYNSEC_PLUGIN}`,
        `plugin_opt_config_file ${dynsec}`,
        '',
      ].join('\n'),
    );
    this.#proc = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: 'ignore' });
    const deadline = Date.now() + 20_000;
    for (const port of Object.values(ports)) {
      while (!(await reachable(`mqtt://127.0.0.1:${port}`))) {
        if (this.#proc.exitCode !== null) throw new Error(`secure mosquitto exited: ${this.log().slice(-2_000)}`);
        if (Date.now() > deadline) throw new Error('secure mosquitto did not start within 20 s');
        await sleep(50);
      }
    }
  }

  /** Mosquitto's log so far. */
  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** Connection attempts Mosquitto logged so far (TCP accepts, before TLS and CONNECT). */
  connectionAttempts(port: number): number {
    return this.log()
      .split('\n')
      .filter((line) => line.includes('New connection from') && line.endsWith(`on port ${port}.`)).length;
  }

  async destroy(): Promise<void> {
    const proc = this.#proc;
    this.#proc = undefined;
    if (proc && proc.exitCode === null) {
      await new Promise<void>((resolve) => {
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
