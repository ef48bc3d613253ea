// `zoo-proxy check`'s last step: the listen and admin addresses are ones this machine can listen
// on. A config names them as text, and only a bind tells whether a name resolves and whether the
// address is one of this machine's (`10.255.255.1`), so each is bound once, on a port the system
// picks, and closed: whether the configured port is free is a question for start, not for check.

import { createServer } from 'node:net'
import type { HostPort } from './config.js'

/** How long a name may take to resolve before check calls it unresolvable. */
const RESOLVE_TIMEOUT_MS = 5_000

const WHY: Readonly<Record<string, string>> = {
  ENOTFOUND: 'the name does not resolve',
  EAI_AGAIN: 'the name does not resolve (DNS did not answer)',
  EADDRNOTAVAIL: 'not an address of this machine',
  EAFNOSUPPORT: 'this machine has no network of that address family',
  ETIMEDOUT: `the name did not resolve within ${RESOLVE_TIMEOUT_MS} ms`,
}

/** Resolves to undefined when `host` can be listened on, else to the error's code or message. */
function tryListen(host: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer()
    const timer = setTimeout(() => {
      server.close()
      resolve('ETIMEDOUT')
    }, RESOLVE_TIMEOUT_MS)
    timer.unref()
    server.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      resolve(err.code ?? err.message)
    })
    server.listen({ host, port: 0, exclusive: true }, () => {
      clearTimeout(timer)
      server.close(() => resolve(undefined))
    })
  })
}

/** One `field: cannot listen on host: CODE (why)` line per address that cannot be bound. */
export async function unbindableAddresses(addresses: ReadonlyArray<readonly [string, HostPort | undefined]>): Promise<string[]> {
  const problems: string[] = []
  for (const [field, at] of addresses) {
    if (at === undefined) continue
    const failure = await tryListen(at.host)
    if (failure !== undefined) problems.push(`${field}: cannot listen on ${at.host}: ${failure}${WHY[failure] === undefined ? '' : ` (${WHY[failure]})`}`)
  }
  return problems
}
