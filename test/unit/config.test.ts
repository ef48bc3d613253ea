import { expect } from 'chai'
import { Buffer } from 'node:buffer'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { validateConfig, parseHostPort, readConfigText } from '../../lib/config.js'
import { configProblems } from '../support/config-problems.js'

const problems = configProblems

describe('config', () => {
  it('fills every default', async () => {
    const c = await validateConfig({ services: [{ name: 'a', path: '/services/a' }] }, '/')
    expect(c.listen).to.deep.equal({ host: '127.0.0.1', port: 8080 })
    expect(c.admin).to.equal(undefined)
    expect(c.zookeeper).to.deep.equal({ connect: '127.0.0.1:2181', sessionTimeoutMs: 10000, keepLastOnEmpty: true, massRemoval: { minKeepPercent: 50, holdMs: 30000 }, resyncJitterMs: 250, auth: [] })
    expect(c.shutdownTimeoutMs).to.equal(10000)
    const s = c.services[0]!
    expect(s.strategy).to.deep.equal({ name: 'round-robin', options: {} })
    expect(s).to.include({ timeoutMs: 30000, connectTimeoutMs: 5000 })
    expect(s.retry).to.deep.include({ attempts: 3, perTryTimeoutMs: 30000, bufferBytes: 65536, nonIdempotent: false })
    expect(Object.isFrozen(c) && Object.isFrozen(c.services[0])).to.equal(true)
  })

  it('accepts the documented example', async () => {
    const c = await validateConfig(
      {
        listen: '127.0.0.1:8080',
        admin: '127.0.0.1:9901',
        zookeeper: { connect: '127.0.0.1:2181,127.0.0.1:2182/chroot', sessionTimeoutMs: 10000 },
        services: [{ name: 'example', path: '/services/example', strategy: 'round-robin', match: { host: 'api.example.test', pathPrefix: '/api' } }],
      },
      '/',
    )
    expect(c.admin).to.deep.equal({ host: '127.0.0.1', port: 9901 })
  })

  it('names the field of every problem, all at once', async () => {
    const p = await problems({
      listen: 'nowhere',
      services: [
        { name: 'a', path: 'relative', strategy: 'nope' },
        { name: 'b', path: '/b', bogus: 1, timeoutMs: 'soon' },
      ],
      extra: true,
    })
    expect(p).to.include('listen: must be host:port, got "nowhere"')
    expect(p.some((l) => l.startsWith('services[0].path:'))).to.equal(true)
    expect(p).to.include('services[1].bogus: unknown key')
    expect(p).to.include('extra: unknown key')
    expect(p.some((l) => l.startsWith('services[1].timeoutMs:'))).to.equal(true)
  })

  it('rejects an unknown strategy with its name', async () => {
    expect(await problems({ services: [{ name: 'a', path: '/a', strategy: 'nope' }] })).to.deep.equal(['services[0].strategy: unknown strategy "nope"'])
    expect(await problems({ services: [{ name: 'a', path: '/a', strategy: { name: 'nope' } }] })).to.deep.equal(['services[0].strategy.name: unknown strategy "nope"'])
  })

  it('refuses a weight outside 0-256, per service or in the strategy, naming the field (issue 21)', async () => {
    for (const w of [1e308, 256.5, 257, 20000, -1, -1e-300]) {
      expect(await problems({ services: [{ name: 'a', path: '/a', weights: { '10.0.0.1:80': w } }] }), String(w)).to.deep.equal([
        `services[0].weights.10.0.0.1:80: ${w > 0 ? 'Too big: expected number to be <=256' : 'Too small: expected number to be >=0'}`,
      ])
      const inStrategy = await problems({ services: [{ name: 'a', path: '/a', strategy: { name: 'weighted', weights: { '10.0.0.1:80': w } } }] })
      expect(inStrategy, String(w)).to.have.length(1)
      expect(inStrategy[0], String(w)).to.match(/^services\[0\]\.strategy\.weights\.10\.0\.0\.1:80: /)
    }
    for (const w of [0, 5e-324, 0.5, 256]) {
      const c = await validateConfig({ services: [{ name: 'a', path: '/a', strategy: { name: 'weighted', weights: { 'h:1': w } }, weights: { 'h:2': w } }] }, '/')
      expect(c.services[0]!.weights, String(w)).to.deep.equal({ 'h:1': w, 'h:2': w })
    }
  })

  // Every duration field, by its path in the config: each is a timer, and a timer over 2^31-1 ms
  // fires after 1 ms (a health check every millisecond).
  const durations: [string, (v: number) => object][] = [
    ['shutdownTimeoutMs', (v) => ({ shutdownTimeoutMs: v })],
    ['clientBodyTimeoutMs', (v) => ({ clientBodyTimeoutMs: v })],
    ['zookeeper.sessionTimeoutMs', (v) => ({ zookeeper: { sessionTimeoutMs: v } })],
    ['zookeeper.resyncJitterMs', (v) => ({ zookeeper: { resyncJitterMs: v } })],
    ...['timeoutMs', 'connectTimeoutMs', 'bodyTimeoutMs', 'keepAliveTimeoutMs', 'slowStartMs'].map((f): [string, (v: number) => object] => [`services[0].${f}`, (v) => ({ svc: { [f]: v } })]),
    ...['perTryTimeoutMs', 'backoffMs'].map((f): [string, (v: number) => object] => [`services[0].retry.${f}`, (v) => ({ svc: { retry: { [f]: v } } })]),
    ['services[0].retry.budget.windowMs', (v) => ({ svc: { retry: { budget: { windowMs: v } } } })],
    ...['baseEjectionMs', 'maxEjectionMs'].map((f): [string, (v: number) => object] => [`services[0].outlier.${f}`, (v) => ({ svc: { outlier: { [f]: v } } })]),
    ...['intervalMs', 'timeoutMs'].map((f): [string, (v: number) => object] => [`services[0].healthCheck.${f}`, (v) => ({ svc: { healthCheck: { path: '/h', [f]: v } } })]),
  ]
  const build = (part: object) => {
    const { svc, ...top } = part as { svc?: object }
    return { ...top, services: [{ name: 'a', path: '/services/a', ...svc }] }
  }
  for (const [field, at] of durations)
    it(`refuses ${field} past the longest timer (2^31-1 ms) and takes it at that bound`, async () => {
      expect(await problems(build(at(2_147_483_648)))).to.deep.equal([`${field}: at most 2147483647 ms (24.8 days)`])
      await validateConfig(build(at(2_147_483_647)), '/')
    })

  it('bounds the counts an operator could write as 1e12, naming the field', async () => {
    for (const [field, part] of [
      ['services[0].maxConnectionsPerInstance', { maxConnectionsPerInstance: 1e12 }],
      ['services[0].retry.bufferBytes', { retry: { bufferBytes: 1e12 } }],
      ['services[0].retry.budget.percent', { retry: { budget: { percent: 1e308 } } }],
      ['services[0].outlier.consecutiveFailures', { outlier: { consecutiveFailures: 1e12 } }],
      ['services[0].healthCheck.healthyThreshold', { healthCheck: { path: '/h', healthyThreshold: 1e12 } }],
    ] as const) {
      const got = await problems({ services: [{ name: 'a', path: '/services/a', ...part }] })
      expect(got, field).to.have.length(1)
      expect(got[0], field).to.match(new RegExp(`^${field.replace(/[[\].]/g, '\\$&')}: `))
    }
  })

  it('refuses at once, naming the field, a certificate, token or credentials path that is a FIFO, a device or a directory (found by the reload attack: a FIFO held every later reload)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-files-'))
    try {
      execFileSync('mkfifo', [path.join(dir, 'fifo')])
      for (const [what, file, why] of [
        ['a FIFO', path.join(dir, 'fifo'), 'not a regular file'],
        ['a device', '/dev/zero', 'not a regular file'],
        ['a directory', dir, 'EISDIR'],
      ] as const) {
        expect(await problems({ tls: { cert: file, key: file }, services: [{ name: 'a', path: '/services/a' }] }), what).to.deep.equal([
          `tls.cert: cannot read ${file}: ${why}`,
          `tls.key: cannot read ${file}: ${why}`,
        ])
        expect(await problems({ admin: { listen: '127.0.0.1:9901', tokenFile: file }, services: [{ name: 'a', path: '/services/a' }] }), what).to.deep.equal([`admin.tokenFile: cannot read ${file}: ${why}`])
      }
      writeFileSync(path.join(dir, 'big.token'), Buffer.alloc(65 * 1024, 'a'))
      expect(await problems({ admin: { listen: '127.0.0.1:9901', tokenFile: path.join(dir, 'big.token') }, services: [{ name: 'a', path: '/services/a' }] })).to.deep.equal([
        `admin.tokenFile: cannot read ${path.join(dir, 'big.token')}: larger than 65536 bytes`,
      ])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('refuses an admin listener on the address of listen, and only then', async () => {
    const svc = [{ name: 'a', path: '/services/a' }]
    const clash = /^admin: the same address as listen \(.*\); give the admin listener a port of its own$/
    for (const [listen, admin] of [
      ['127.0.0.1:8080', '127.0.0.1:8080'],
      ['0.0.0.0:8080', '127.0.0.1:8080'],
      ['127.0.0.1:8080', '0.0.0.0:8080'],
      ['[::]:8080', '[::1]:8080'],
      ['[::1]:8080', '[::1]:8080'],
    ]) {
      const got = await problems({ listen, admin, services: svc })
      expect(got, `${listen} ${admin}`).to.have.length(1)
      expect(got[0], `${listen} ${admin}`).to.match(clash)
      expect(await problems({ listen, admin: { listen: admin, token: 'x'.repeat(32) }, services: svc }), `${listen} {listen: ${admin}}`).to.have.length(1)
    }
    for (const [listen, admin] of [
      ['127.0.0.1:8080', '127.0.0.1:9901'],
      ['127.0.0.1:8080', '127.0.0.2:8080'],
      ['127.0.0.1:0', '127.0.0.1:0'],
    ]) expect((await validateConfig({ listen, admin, services: svc }, '.')).admin, `${listen} ${admin}`).to.deep.equal(parseHostPort(admin))
  })

  it('refuses a config, token or credentials file that is not UTF-8, naming the field, byte and line (it was read with U+FFFD in place)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-utf8-'))
    try {
      const file = path.join(dir, 'proxy.yaml')
      writeFileSync(file, Buffer.concat([Buffer.from('services:\n  - name: caf'), Buffer.from([0xe9]), Buffer.from('\n    path: /s\n')]))
      const err = await readConfigText(file).catch((e: unknown) => e)
      expect((err as { problems?: string[] }).problems).to.deep.equal([`(file): ${file}: not UTF-8 at byte 23 (line 2)`])
      writeFileSync(path.join(dir, 'admin.token'), Buffer.from([0x74, 0x6f, 0x6b, 0xff]))
      expect(await problems({ admin: { listen: '127.0.0.1:9901', tokenFile: 'admin.token' }, services: [{ name: 'a', path: '/services/a' }] }, dir)).to.deep.equal([
        `admin.tokenFile: ${path.join(dir, 'admin.token')}: not UTF-8 at byte 3 (line 1)`,
      ])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('refuses admin on listen\'s address exactly when the kernel would refuse the second bind, however the address is spelled', async () => {
    const svc = [{ name: 'a', path: '/services/a' }]
    // Spellings of loopback, wildcard and IPv4-mapped addresses, IPv4 and IPv6.
    const hosts = ['127.0.0.1', '127.1', '0x7f.0.0.1', '0.0.0.0', '0', '127.0.0.2', '[::1]', '[0:0::1]', '[::]', '[::0]', '[0:0:0:0:0:0:0:0]', '[::ffff:127.0.0.1]', '[::FFFF:7f00:1]', '[::ffff:0.0.0.0]']
    const bind = (host: string, port: number) =>
      new Promise<net.Server | null>((resolve) => {
        const server = net.createServer()
        server.once('error', () => resolve(null))
        server.listen({ host: host.replace(/^\[|\]$/g, ''), port }, () => resolve(server))
      })
    /** Whether binding `b` on the port `a` got fails, in either order (the check is symmetric). */
    const kernelRefuses = async (a: string, b: string) => {
      for (const [first, second] of [
        [a, b],
        [b, a],
      ]) {
        const one = await bind(first!, 0)
        if (one === null) throw new Error(`cannot bind ${first}`)
        const two = await bind(second!, (one.address() as net.AddressInfo).port)
        one.close()
        two?.close()
        if (two === null) return true
      }
      return false
    }
    for (const a of hosts) {
      for (const b of hosts) {
        const want = await kernelRefuses(a, b)
        const got = await validateConfig({ listen: `${a}:8080`, admin: `${b}:8080`, services: svc }, '.').then(
          () => [],
          (err: { problems: string[] }) => err.problems,
        )
        expect(got.length === 1 && /^admin: the same address as listen/.test(got[0]!), `listen ${a}, admin ${b}: the kernel ${want ? 'refuses' : 'takes'} both`).to.equal(want)
      }
    }
    // A name is compared as a name: the same one clashes, and with a wildcard.
    for (const [listen, admin] of [
      ['localhost:8080', 'LOCALHOST:8080'],
      ['0.0.0.0:8080', 'localhost:8080'],
    ]) expect(await problems({ listen, admin, services: svc }), `${listen} ${admin}`).to.have.length(1)
  })

  it('rejects a missing or empty services list', async () => {
    expect((await problems({}))[0]).to.match(/^services: /)
    expect((await problems({ services: [] }))[0]).to.match(/^services: /)
  })

  it('rejects duplicate names and two default routes', async () => {
    const p = await problems({ services: [{ name: 'a', path: '/a' }, { name: 'a', path: '/b' }] })
    expect(p.some((l) => l.startsWith('services[1].name: duplicate service name "a"'))).to.equal(true)
    expect(p.some((l) => l.startsWith('services[1].match: only one service may be the default route'))).to.equal(true)
  })

  it('parses host:port forms', () => {
    expect(parseHostPort('0.0.0.0:80')).to.deep.equal({ host: '0.0.0.0', port: 80 })
    expect(parseHostPort(':9901')).to.deep.equal({ host: '127.0.0.1', port: 9901 })
    expect(parseHostPort(9901)).to.deep.equal({ host: '127.0.0.1', port: 9901 })
    expect(parseHostPort('[::1]:8080')).to.deep.equal({ host: '::1', port: 8080 })
    expect(parseHostPort('localhost:99999')).to.equal(null)
    expect(parseHostPort('a:b:1')).to.equal(null)
  })
})
