import { z } from 'zod';

// PEM is text: a Buffer of it becomes the string, so drivers and client libraries see one type.
const pem = z.union([z.string().min(1), z.instanceof(Buffer).transform((b) => b.toString('utf8'))]);

/**
 * The `tls` option object every driver takes (PEM text or Buffers), passed to Node's `tls.connect` by the client
 * library. `key` and `passphrase` are secrets: drivers list them in `secretOptions` (see `TLS_SECRET_OPTIONS`).
 */
export const tlsOptionsSchema = z
  .strictObject({
    /** CA bundle that signed the servers' certificates (default: the system CAs). */
    ca: pem.optional(),
    /** Client certificate, for servers that verify clients (mutual TLS); needs `key`. */
    cert: pem.optional(),
    /** The client certificate's private key (a secret). */
    key: pem.optional(),
    /** The key's passphrase when it is encrypted (a secret). */
    passphrase: z.string().optional(),
    /** The TLS server name (SNI, and the name checked) when it differs from the URL's host. */
    servername: z.string().min(1).max(253).optional(),
    /** Verify the server's certificate. Default true; turn it off only in tests. */
    rejectUnauthorized: z.boolean().optional(),
  })
  .refine((t) => (t.cert === undefined) === (t.key === undefined), {
    message: 'a client certificate needs both cert and key',
    path: ['cert'],
  });

export type TlsOptions = z.input<typeof tlsOptionsSchema>;
export type ResolvedTlsOptions = z.output<typeof tlsOptionsSchema>;

/** The secret paths of the `tls` option, for a driver's `secretOptions`. */
export const TLS_SECRET_OPTIONS = ['tls.key', 'tls.passphrase'] as const;
