// Certificate, key and CA files read and checked as a whole, so that a file that is readable but
// wrong (garbage PEM, a key of another certificate) is a config problem naming its field, found by
// `zoo-proxy check`, at start and on a reload alike, and never a throw from deep inside node:tls.

import { X509Certificate, createPrivateKey } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { MAX_PEM_BYTES, readFieldFile } from './read-file.js'
import { createSecureContext } from 'node:tls'
import { ConfigError } from './errors.js'

/** File paths, already absolute. */
export interface TlsFiles {
  readonly cert?: string | undefined
  readonly key?: string | undefined
  readonly ca?: string | undefined
}

/** The files' contents, each checked. */
export interface TlsMaterial {
  readonly cert?: Buffer
  readonly key?: Buffer
  readonly ca?: Buffer
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g

/** OpenSSL's reason without its numeric prefix (`error:05800074:x509 ...::key values mismatch`). */
function reason(err: unknown): string {
  const message = (err as Error)?.message ?? String(err)
  const at = message.lastIndexOf('::')
  return at >= 0 ? message.slice(at + 2) : message
}

/** Every PEM certificate in `pem` parsed (a CA file may hold several); a problem line, or the first one. */
function certificates(pem: Buffer, field: string, file: string): X509Certificate | string {
  const blocks = pem.toString('latin1').match(PEM_CERTIFICATE)
  if (blocks === null) return `${field}: ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`
  const parsed: X509Certificate[] = []
  for (const [i, block] of blocks.entries()) {
    try {
      parsed.push(new X509Certificate(block))
    } catch (err) {
      return `${field}: certificate ${i + 1} in ${file} is not valid: ${reason(err)}`
    }
  }
  return parsed[0]!
}

/**
 * Reads the files and checks them: every certificate parses, the key parses, the key belongs to
 * the certificate, and node:tls takes the set. `at` is the config field holding them (`tls`,
 * `services[0].upstreamTls`). Throws a ConfigError with one line per problem.
 */
export async function loadTlsFiles(at: string, files: TlsFiles): Promise<TlsMaterial> {
  const problems: string[] = []
  const out: { cert?: Buffer; key?: Buffer; ca?: Buffer } = {}
  await Promise.all(
    (['cert', 'key', 'ca'] as const).map(async (f) => {
      const file = files[f]
      if (file === undefined) return
      try {
        out[f] = await readFieldFile(`${at}.${f}`, file, MAX_PEM_BYTES)
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err
        problems.push(...err.problems)
      }
    }),
  )
  if (problems.length > 0) throw new ConfigError(problems.sort())
  let cert: X509Certificate | undefined
  let key: KeyObject | undefined
  for (const f of ['cert', 'ca'] as const) {
    if (out[f] === undefined) continue
    const parsed = certificates(out[f], `${at}.${f}`, files[f]!)
    if (typeof parsed === 'string') problems.push(parsed)
    else if (f === 'cert') cert = parsed
  }
  if (out.key !== undefined) {
    try {
      key = createPrivateKey(out.key)
    } catch (err) {
      problems.push(`${at}.key: ${files.key} is not a valid unencrypted PEM private key: ${reason(err)}`)
    }
  }
  if (cert !== undefined && key !== undefined && !cert.checkPrivateKey(key)) problems.push(`${at}.key: ${files.key} is not the key of ${at}.cert (${files.cert})`)
  if (problems.length > 0) throw new ConfigError(problems)
  try {
    // What node:tls itself refuses (a key type TLS cannot use, for instance), said here too.
    createSecureContext(out)
  } catch (err) {
    throw new ConfigError([`${at}: node:tls refuses these files: ${reason(err)}`])
  }
  return out
}
