// Certificates a test makes for itself with Debian's openssl: a CA, and a server certificate it
// signs for 127.0.0.1 / ::1 / localhost. Nothing here is secret; every run makes new ones.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export interface TestCerts {
  readonly dir: string
  /** PEM file paths. */
  readonly caCert: string
  readonly cert: string
  readonly key: string
  /** The CA certificate's PEM text (for a client's `ca`). */
  readonly ca: Buffer
  remove(): void
}

export function makeCerts(name = 'server'): TestCerts {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-certs-'))
  const at = (f: string) => path.join(dir, f)
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=zoo-proxy test CA', '-keyout', at('ca.key'), '-out', at('ca.crt'))
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', at(`${name}.key`), '-out', at(`${name}.csr`))
  writeFileSync(at('ext.cnf'), 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n')
  ssl('x509', '-req', '-in', at(`${name}.csr`), '-CA', at('ca.crt'), '-CAkey', at('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', at('ext.cnf'), '-out', at(`${name}.crt`))
  return {
    dir,
    caCert: at('ca.crt'),
    cert: at(`${name}.crt`),
    key: at(`${name}.key`),
    ca: readFileSync(at('ca.crt')),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}

/**
 * Certificates for a whole `describe`: made before its tests, removed after. The object stands
 * for them from the first test on (mocha hooks: call this in the describe's body).
 */
export function useCerts(name = 'server'): TestCerts {
  let made: TestCerts | undefined
  before(() => {
    made = makeCerts(name)
  })
  after(() => made?.remove())
  return new Proxy({} as TestCerts, {
    get: (_target, key) => {
      if (made === undefined) throw new Error('useCerts: the certificates are made in a before() hook')
      return made[key as keyof TestCerts]
    },
  })
}
