import { readFile } from 'node:fs/promises';
import { ConfigError } from '@busbar/core';
import {
  type Authenticator,
  credsAuthenticator,
  nkeyAuthenticator,
  type TlsOptions,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
} from 'nats';
import type { NatsOptions } from './options.js';

/** What the client needs to authenticate and encrypt, made from the options with nats.js' own authenticators. */
export interface Security {
  readonly authenticator: Authenticator | undefined;
  readonly tls: TlsOptions | undefined;
}

/** An nkey seed (user, account, operator) as it appears in a `.creds` file or an option. */
const SEED = /\bS[UAO][A-Z2-7]{56}\b/g;

const encoder = new TextEncoder();

/**
 * The secrets in the options core does not see (it collects top-level string options only): the TLS key and
 * the seeds inside creds. Each must stay out of every error and log line, like the password.
 */
export function optionSecrets(options: NatsOptions): string[] {
  const out: string[] = [];
  if (typeof options.tls === 'object' && options.tls.key !== undefined) out.push(options.tls.key);
  if (options.creds !== undefined) out.push(...seedsIn(options.creds));
  return out;
}

function seedsIn(text: string): string[] {
  return text.match(SEED) ?? [];
}

/**
 * The authenticator and TLS options for the client. Exactly one auth method may be given: the server accepts
 * one, and silently preferring one of two would hide a configuration mistake. Reading `credsFile` adds the
 * seeds it holds to `secrets`.
 */
export async function security(
  options: NatsOptions,
  user: string | undefined,
  pass: string | undefined,
  secrets: string[],
): Promise<Security> {
  const methods = [
    user !== undefined || pass !== undefined ? 'user/pass' : undefined,
    options.token !== undefined ? 'token' : undefined,
    options.nkeySeed !== undefined ? 'nkeySeed' : undefined,
    options.creds !== undefined ? 'creds' : undefined,
    options.credsFile !== undefined ? 'credsFile' : undefined,
  ].filter((m) => m !== undefined);
  if (methods.length > 1) {
    throw new ConfigError(`Invalid connect options: give one NATS auth method, not ${methods.join(' and ')}`);
  }
  return { authenticator: await authenticator(options, user, pass, secrets), tls: tlsOptions(options) };
}

async function authenticator(
  options: NatsOptions,
  user: string | undefined,
  pass: string | undefined,
  secrets: string[],
): Promise<Authenticator | undefined> {
  if (user !== undefined || pass !== undefined) return usernamePasswordAuthenticator(user ?? '', pass);
  if (options.token !== undefined) return tokenAuthenticator(options.token);
  if (options.nkeySeed !== undefined) return nkeyAuthenticator(encoder.encode(options.nkeySeed));
  if (options.creds !== undefined) return credsAuthenticator(encoder.encode(options.creds));
  if (options.credsFile !== undefined) {
    let text: string;
    try {
      text = await readFile(options.credsFile, 'utf8');
    } catch (error) {
      // The path is not a secret; the error (ENOENT, EACCES) carries nothing of the file.
      throw new ConfigError(
        `Reading the NATS creds file '${options.credsFile}' failed: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    secrets.push(...seedsIn(text));
    return credsAuthenticator(encoder.encode(text));
  }
  return undefined;
}

function tlsOptions(options: NatsOptions): TlsOptions | undefined {
  const { tls } = options;
  if (tls === false) return undefined;
  if (tls === true) return {};
  // The schema (tlsOptionsSchema) already refused a cert without its key.
  return { ...tls };
}
