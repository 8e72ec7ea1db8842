import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A certificate and its private key, as PEM files (keys are unencrypted PKCS#8). */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

/**
 * A private CA and the certificates the TLS tests need, made with the `openssl` command at test time (Node's
 * crypto cannot issue certificates). Every file is PEM in `dir`; `pem(path)` reads one. Keys are EC P-256:
 * fast to make, and accepted by every broker here (Erlang, Java, OpenSSL, Go).
 */
export interface TestPki {
  readonly dir: string;
  /** The CA that signed `server`, `client`, `expired` and `wrongHost`. */
  readonly ca: string;
  /** A second CA that signed nothing here: trusting only it makes every server certificate untrusted. */
  readonly otherCa: string;
  /** Server certificate for `localhost` and `127.0.0.1` (DNS and IP SANs). */
  readonly server: CertFiles;
  /** Client certificate (CN `busbar-client`, extended key usage clientAuth) for mTLS. */
  readonly client: CertFiles;
  /** A client certificate signed by `otherCa`: a broker that checks client certificates refuses it. */
  readonly foreignClient: CertFiles;
  /** A server certificate for `localhost`/`127.0.0.1` that expired yesterday. */
  readonly expired: CertFiles;
  /** A valid server certificate for `wrong.example` only: a hostname mismatch for 127.0.0.1. */
  readonly wrongHost: CertFiles;
  /** The file's text. */
  pem(path: string): string;
  /** Removes `dir`. */
  remove(): void;
}

/** True when the `openssl` command runs here. */
export function opensslAvailable(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore', timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

/** Makes a fresh private PKI in a temp dir (about 0.2 s). */
export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'busbar-pki-'));
  const file = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe', timeout: 30_000 });
  const key = (name: string) => {
    openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file(`${name}.key`));
    return file(`${name}.key`);
  };
  const ca = (name: string) => {
    const k = key(name);
    openssl(
      'req',
      '-x509',
      '-new',
      '-key',
      k,
      '-subj',
      `/CN=busbar test ${name}`,
      '-days',
      '2',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      file(`${name}.crt`),
    );
    return { cert: file(`${name}.crt`), key: k };
  };
  // `days` below 0 gives a certificate whose validity ended before now: OpenSSL 3 takes a negative -days.
  const issue = (name: string, by: CertFiles, cn: string, ext: string, days: number): CertFiles => {
    const k = key(name);
    openssl('req', '-new', '-key', k, '-subj', `/CN=${cn}`, '-out', file(`${name}.csr`));
    writeFileSync(file(`${name}.ext`), ext);
    openssl(
      'x509',
      '-req',
      '-in',
      file(`${name}.csr`),
      '-CA',
      by.cert,
      '-CAkey',
      by.key,
      '-CAcreateserial',
      '-days',
      String(days),
      '-extfile',
      file(`${name}.ext`),
      '-out',
      file(`${name}.crt`),
    );
    return { cert: file(`${name}.crt`), key: k };
  };
  const serverExt = (names: string) =>
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${names}\n`;
  const clientExt =
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n';
  try {
    const root = ca('ca');
    const other = ca('other-ca');
    // serverAuth and clientAuth: clustered brokers use the server certificate for their links to each other.
    const server = issue('server', root, 'localhost', serverExt('DNS:localhost,IP:127.0.0.1'), 2);
    const client = issue('client', root, 'busbar-client', clientExt, 2);
    const foreignClient = issue('foreign-client', other, 'busbar-client', clientExt, 2);
    const expired = issue('expired', root, 'localhost', serverExt('DNS:localhost,IP:127.0.0.1'), -1);
    const wrongHost = issue('wrong-host', root, 'wrong.example', serverExt('DNS:wrong.example'), 2);
    return {
      dir,
      ca: root.cert,
      otherCa: other.cert,
      server,
      client,
      foreignClient,
      expired,
      wrongHost,
      pem: (path) => readFileSync(path, 'utf8'),
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
