import { createHash } from 'node:crypto';
import { nkeys } from 'nats';

/**
 * Operator-mode credentials for a private nats-server, made in the test with the nkeys nats.js ships (re-exported
 * as `nkeys` by 'nats', so no extra dependency): an operator, a system account, an account with JetStream and a
 * user of it whose permissions forbid publishing to the `deny` subjects. The JWTs are NATS v2 JWTs (ed25519-nkey), written
 * here because nats.js has no JWT encoder.
 */
export interface OperatorSetup {
  /** nats-server config lines: operator, system account, resolver MEMORY with both accounts preloaded. */
  readonly config: string;
  /** The user's `.creds` file contents. */
  readonly creds: string;
  /** The user's seed (inside `creds`), to check it never shows. */
  readonly userSeed: string;
  /** A `.creds` of a user signed by an account the server does not know. */
  readonly strangerCreds: string;
}

type KeyPair = ReturnType<typeof nkeys.createOperator>;

const text = new TextDecoder();

function b64url(data: string | Uint8Array): string {
  return Buffer.from(data).toString('base64url');
}

function jwt(signer: KeyPair, subject: string, name: string, nats: Record<string, unknown>): string {
  const claims: Record<string, unknown> = {
    jti: '',
    iat: Math.floor(Date.now() / 1000),
    iss: signer.getPublicKey(),
    name,
    sub: subject,
    nats: { ...nats, version: 2 },
  };
  claims.jti = createHash('sha256').update(JSON.stringify(claims)).digest('base64url');
  const head = `${b64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }))}.${b64url(JSON.stringify(claims))}`;
  return `${head}.${b64url(signer.sign(new TextEncoder().encode(head)))}`;
}

const UNLIMITED = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };

function account(operator: KeyPair, key: KeyPair, name: string, jetstream: boolean): string {
  const js = jetstream
    ? { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 }
    : { mem_storage: 0, disk_storage: 0 };
  return jwt(operator, key.getPublicKey(), name, { type: 'account', limits: { ...UNLIMITED, ...js } });
}

function userCreds(accountKey: KeyPair, deny: readonly string[]): { creds: string; seed: string } {
  const user = nkeys.createUser();
  const token = jwt(accountKey, user.getPublicKey(), 'busbar-user', {
    type: 'user',
    pub: { deny: [...deny] },
    sub: {},
    subs: -1,
    data: -1,
    payload: -1,
  });
  const seed = text.decode(user.getSeed());
  const creds =
    `-----BEGIN NATS USER JWT-----\n${token}\n------END NATS USER JWT------\n\n` +
    `************************* IMPORTANT *************************\n` +
    `NKEY Seed printed below can be used to sign and prove identity.\n\n` +
    `-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`;
  return { creds, seed };
}

export function operatorSetup(deny: readonly string[]): OperatorSetup {
  const operator = nkeys.createOperator();
  const op = operator.getPublicKey();
  const operatorJwt = jwt(operator, op, 'busbar-op', { type: 'operator' });
  const sys = nkeys.createAccount();
  const acct = nkeys.createAccount();
  const { creds, seed } = userCreds(acct, deny);
  const stranger = userCreds(nkeys.createAccount(), deny);
  const config = [
    `operator: "${operatorJwt}"`,
    `system_account: ${sys.getPublicKey()}`,
    'resolver: MEMORY',
    'resolver_preload: {',
    `  ${sys.getPublicKey()}: "${account(operator, sys, 'SYS', false)}"`,
    `  ${acct.getPublicKey()}: "${account(operator, acct, 'APP', true)}"`,
    '}',
  ].join('\n');
  return { config, creds, userSeed: seed, strangerCreds: stranger.creds };
}
