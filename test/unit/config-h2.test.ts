// The client-side HTTP/2 keys (issue 26 §2): tls.alpn, h2c, limits.maxConcurrentStreams. Each
// bad value is refused naming its field (the CLI then exits 2: the class is the same ConfigError).

import { expect } from 'chai'
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { validateConfig } from '../../lib/config.js'
import { useCerts } from '../support/certs.js'
import { configProblems } from '../support/config-problems.js'

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))
const SERVICES = [{ name: 'a', path: '/services/a' }]

describe('config: HTTP/2 toward clients (issue 26 §2)', function () {
  this.timeout(30_000)
  const certs = useCerts()

  it('defaults to h2c on, 100 streams a session, and ALPN h2 then http/1.1', async () => {
    const c = await validateConfig({ services: SERVICES, tls: { cert: certs.cert, key: certs.key } }, '/')
    expect(c.h2c).to.equal(true)
    expect(c.limits.maxConcurrentStreams).to.equal(100)
    expect(c.tls!.alpn).to.deep.equal(['h2', 'http/1.1'])
  })

  it('keeps the order ALPN protocols are listed in, and takes each one alone', async () => {
    for (const alpn of [['http/1.1', 'h2'], ['h2'], ['http/1.1'], ['h2', 'http/1.1']]) {
      const c = await validateConfig({ services: SERVICES, tls: { cert: certs.cert, key: certs.key, alpn } }, '/')
      expect(c.tls!.alpn).to.deep.equal(alpn)
    }
  })

  it('refuses every bad tls.alpn naming tls.alpn: empty, repeated, unknown, not a list', async () => {
    for (const alpn of [[], ['h2', 'h2'], ['http/1.1', 'h2', 'http/1.1'], ['h3'], ['h2c'], ['HTTP/1.1'], 'h2', [1], null, {}]) {
      const got = await configProblems({ services: SERVICES, tls: { cert: certs.cert, key: certs.key, alpn } })
      expect(got, JSON.stringify(alpn)).to.have.length(1)
      expect(got[0], JSON.stringify(alpn)).to.match(/^tls\.alpn(\[\d+\])?: /)
    }
  })

  it('bounds limits.maxConcurrentStreams to 1..10000 integers, naming the field', async () => {
    for (const n of [1, 10_000]) expect((await validateConfig({ services: SERVICES, limits: { maxConcurrentStreams: n } }, '/')).limits.maxConcurrentStreams).to.equal(n)
    for (const n of [0, -1, 10_001, 1e12, 1.5, '100', Number.NaN, null]) {
      const got = await configProblems({ services: SERVICES, limits: { maxConcurrentStreams: n } })
      expect(got, String(n)).to.have.length(1)
      expect(got[0], String(n)).to.match(/^limits\.maxConcurrentStreams: /)
    }
  })

  it('takes h2c as a boolean only', async () => {
    expect((await validateConfig({ services: SERVICES, h2c: false }, '/')).h2c).to.equal(false)
    for (const v of ['yes', 1, 'false', null]) {
      const got = await configProblems({ services: SERVICES, h2c: v })
      expect(got, String(v)).to.have.length(1)
      expect(got[0], String(v)).to.match(/^h2c: /)
    }
  })

  it('exits 2 at `check` naming tls.alpn', () => {
    const file = path.join(certs.dir, 'alpn.yaml')
    writeFileSync(file, `tls: { cert: ${certs.cert}, key: ${certs.key}, alpn: [h2, h2] }\nservices:\n  - name: a\n    path: /a\n`)
    let code = 0
    let stderr = ''
    try {
      execFileSync(process.execPath, [CLI, 'check', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] })
    } catch (err) {
      code = (err as { status: number }).status
      stderr = String((err as { stderr: Buffer }).stderr)
    }
    expect(code).to.equal(2)
    expect(stderr).to.match(/^tls\.alpn: /m)
  })
})
