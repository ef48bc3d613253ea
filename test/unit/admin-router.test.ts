// The admin router's decisions, on a real listener on loopback with fake sources (issue 22, the
// Stryker run over the HTTP layer): the token on every entry of ADMIN_ENDPOINTS but the open ones
// (each way of sending it), the route table (a path not in it is a 404 listing the table), the
// methods each entry serves, /reload's answers, the override endpoint's checks and bounds,
// readiness, /upstreams, /metrics and the status page's headers.

import { expect } from 'chai'
import http from 'node:http'
import net from 'node:net'
import type { Discovery } from '../../lib/discovery/index.js'
import { WEIGHT_MAX, WEIGHT_MIN } from '../../lib/discovery/endpoint.js'
import { ConfigError, ProxyError } from '../../lib/errors.js'
import type { Service } from '../../lib/http/service.js'
import { ADMIN_ENDPOINTS, AdminServer, upstreamsReport } from '../../lib/ops/admin.js'
import type { AdminSources } from '../../lib/ops/admin.js'
import type { MetricsSource } from '../../lib/ops/metrics.js'
import { useClosers } from '../support/helpers.js'

interface Answer {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}

function request(port: number, method: string, path: string, opts: { body?: string; authorization?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers = opts.authorization === undefined ? {} : { authorization: opts.authorization }
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false, headers }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (text += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

type Status = ReturnType<Discovery['status']>

function discovery(ready: boolean, status: () => Status): Discovery {
  return { ready, status } as unknown as Discovery
}

const CONNECTED = (): Status => ({ session: { state: 'connected', lastContactAgoMs: 0 }, services: {} }) as unknown as Status

interface FakeHost {
  readonly hostPort: string
  readonly key: string
}

function service(name: string, hosts: FakeHost[], overrides: [string, unknown][] = []): Service {
  return {
    name,
    config: { path: `/${name}`, strategy: { name: 'round-robin' } },
    balancer: { hosts, setOverride: (hostPort: string, o: unknown) => overrides.push([hostPort, o]) },
  } as unknown as Service
}

const HOST: FakeHost = { hostPort: '127.0.0.1:9', key: '/svc/a', endpoint: { meta: {} } } as FakeHost

describe('the admin router', function () {
  // Stryker runs mocha with no timeout; a hang fails the test here instead of restarting its worker.
  if (process.env.STRYKER_MUTATOR_WORKER !== undefined) this.timeout(10_000)
  const closers = useClosers()

  async function admin(src: Partial<AdminSources> = {}): Promise<number> {
    const server = new AdminServer({ discovery: discovery(true, CONNECTED), services: [service('svc', [HOST])], ...src })
    closers.push(() => server.close())
    return (await server.listen({ host: '127.0.0.1', port: 0 })).port
  }

  /** A concrete path for each entry of the table, and a body a PUT takes. */
  const probes = ADMIN_ENDPOINTS.flatMap((e) => e.methods.map((method) => ({ method, path: e.path.replace('{name}', 'svc').replace('{host:port}', HOST.hostPort), open: e.open === true })))

  it('asks for the token on every entry of its table but the open ones, and takes it as Bearer or as the Basic password', async () => {
    const port = await admin({ token: 'tok-en', reload: () => Promise.resolve({}), metrics: { text: () => Promise.resolve(''), contentType: 'text/plain' } as MetricsSource })
    const basic = (pair: string) => `Basic ${Buffer.from(pair).toString('base64')}`
    const right = ['Bearer tok-en', 'bearer tok-en', 'BEARER  tok-en ', basic('user:tok-en'), basic(':tok-en'), `basic ${Buffer.from('u: tok-en ').toString('base64')}`]
    const wrong = [undefined, '', 'tok-en', 'Bearer', 'Bearer ', 'Bearer tok-e', 'Bearer tok-enn', 'Bearertok-en', 'Token tok-en', basic('tok-en'), basic('user:tok-e'), basic('tok-en:'), 'Basic ', 'xBearer tok-en', `Token ${Buffer.from('u:tok-en').toString('base64')}`, `xBasic ${Buffer.from('u:tok-en').toString('base64')}`]
    for (const { method, path, open } of probes) {
      const body = method === 'PUT' ? '{"weight":2}' : undefined
      for (const authorization of wrong) {
        const a = await request(port, method, path, { authorization, ...(body === undefined ? {} : { body }) })
        const what = `${method} ${path} ${authorization}`
        if (open) {
          expect(a.status, what).to.equal(200)
          continue
        }
        expect(a.status, what).to.equal(401)
        if (method !== 'HEAD') expect(JSON.parse(a.body).error, what).to.equal('unauthorized')
        expect(a.headers['www-authenticate'], what).to.equal(path === '/' ? 'Basic realm="zoo-proxy admin", charset="UTF-8"' : 'Bearer realm="zoo-proxy admin"')
      }
      for (const authorization of right) {
        const a = await request(port, method, path, { authorization, ...(body === undefined ? {} : { body }) })
        expect(a.status, `${method} ${path} ${authorization}`).to.equal(200)
      }
    }
    // Paths outside the table get the 401 as well: which exist is not told without the token.
    for (const path of ['/nope', '/reload/', '/healthz/x', '/readyzz']) expect((await request(port, 'GET', path)).status, path).to.equal(401)
    expect((await request(port, 'GET', '/healthz?probe=1')).status).to.equal(200)
  })

  it('serves every entry without a token when none is set', async () => {
    const port = await admin({ reload: () => Promise.resolve({}), metrics: { text: () => Promise.resolve(''), contentType: 'text/plain' } as MetricsSource })
    for (const { method, path } of probes) expect((await request(port, method, path, method === 'PUT' ? { body: '{"weight":2}' } : {})).status, `${method} ${path}`).to.equal(200)
  })

  it('answers 404 with its table for a path not in it, a {segment} left empty, or one segment too many', async () => {
    const port = await admin()
    const table = ['GET|HEAD /', 'GET|HEAD /healthz', 'GET|HEAD /readyz', 'GET|HEAD /upstreams', 'GET|HEAD /metrics', 'POST /reload', 'PUT|DELETE /services/{name}/instances/{host:port}']
    for (const path of ['/nope', '/healthz/', '/upstreams/x', '/reload/', '/services/svc/instances/', '/services//instances/127.0.0.1:9', '/services/svc/instances/127.0.0.1:9/x', '/services/svc/instance/127.0.0.1:9', '//', '/services']) {
      for (const method of ['GET', 'PUT', 'POST']) {
        const a = await request(port, method, path, method === 'GET' ? {} : { body: '{}' })
        expect(a.status, `${method} ${path}`).to.equal(404)
        expect(JSON.parse(a.body), path).to.deep.equal({ error: 'not found', endpoints: table })
      }
    }
  })

  it('answers 405 to a method an entry does not serve, and a CONNECT', async () => {
    const port = await admin({ reload: () => Promise.resolve({}) })
    for (const [method, path, allowed] of [
      ['GET', '/reload', ['POST']],
      ['PUT', '/reload', ['POST']],
      ['GET', '/services/svc/instances/127.0.0.1:9', ['PUT', 'DELETE']],
      ['POST', '/services/svc/instances/127.0.0.1:9', ['PUT', 'DELETE']],
      ['POST', '/healthz', undefined],
      ['DELETE', '/upstreams', undefined],
      ['PUT', '/', undefined],
      ['PATCH', '/metrics', undefined],
    ] as const) {
      const a = await request(port, method, path, { body: '{}' })
      expect(a.status, `${method} ${path}`).to.equal(405)
      expect(JSON.parse(a.body), `${method} ${path}`).to.deep.equal({ error: 'method not allowed', ...(allowed === undefined ? {} : { allowed }) })
    }
    const raw = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n'))
      let text = ''
      s.setEncoding('latin1')
      s.on('data', (d: string) => (text += d))
      s.on('end', () => resolve(text))
      s.on('error', reject)
    })
    expect(raw).to.equal('HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
  })

  it("answers /reload with what changed, a 400 naming a refused file's problems, the error's own status, or a 500", async () => {
    const off = await request(await admin(), 'POST', '/reload')
    expect([off.status, JSON.parse(off.body)]).to.deep.equal([404, { error: 'reload is not available here' }])
    const cases: [() => Promise<object>, number, object][] = [
      [() => Promise.resolve({ added: ['b'] }), 200, { reloaded: true, added: ['b'] }],
      [() => Promise.reject(new ConfigError(['services.0.path: required'])), 400, { reloaded: false, error: 'config refused; the running config stays', problems: ['services.0.path: required'] }],
      [() => Promise.reject(new ProxyError('ZP_ERR_ZK_TIMEOUT', 'warming timed out', { statusCode: 503 })), 503, { reloaded: false, error: 'reload refused; the running config stays', code: 'ZP_ERR_ZK_TIMEOUT', message: 'warming timed out' }],
      [() => Promise.reject(new ProxyError('ZP_ERR_CLOSED', 'closed')), 500, { reloaded: false, error: 'reload failed', message: 'closed' }],
      [() => Promise.reject(new Error('disk on fire')), 500, { reloaded: false, error: 'reload failed', message: 'disk on fire' }],
      [() => Promise.reject('plain text'), 500, { reloaded: false, error: 'reload failed', message: 'plain text' }],
      [() => Promise.reject(undefined), 500, { reloaded: false, error: 'reload failed', message: 'undefined' }],
    ]
    for (const [reload, status, body] of cases) {
      const a = await request(await admin({ reload }), 'POST', '/reload')
      expect([a.status, JSON.parse(a.body)]).to.deep.equal([status, body])
      expect(a.headers['content-type']).to.equal('application/json')
    }
  })

  it('sets an override on every service of that name, clears it with DELETE, and refuses unknown services and instances', async () => {
    const seen: [string, unknown][] = []
    const port = await admin({ services: [service('svc', [{ hostPort: '127.0.0.1:8', key: '/svc/z' }, HOST], seen), service('svc', [HOST], seen), service('other', [{ hostPort: '10.0.0.1:80', key: '/o/a' }], seen)] })
    const put = await request(port, 'PUT', '/services/svc/instances/127.0.0.1:9', { body: '{"weight": 3, "state": "draining"}' })
    expect([put.status, JSON.parse(put.body)]).to.deep.equal([200, { service: 'svc', instance: '127.0.0.1:9', override: { weight: 3, state: 'draining' } }])
    const del = await request(port, 'DELETE', '/services/svc/instances/127.0.0.1:9')
    expect([del.status, JSON.parse(del.body)]).to.deep.equal([200, { service: 'svc', instance: '127.0.0.1:9', override: null }])
    expect(seen).to.deep.equal([
      ['127.0.0.1:9', { weight: 3, state: 'draining' }],
      ['127.0.0.1:9', { weight: 3, state: 'draining' }],
      ['127.0.0.1:9', null],
      ['127.0.0.1:9', null],
    ])
    for (const method of ['PUT', 'DELETE']) {
      const noService = await request(port, method, '/services/nope/instances/127.0.0.1:9', { body: '{"weight":1}' })
      expect([noService.status, JSON.parse(noService.body)]).to.deep.equal([404, { error: 'unknown service', service: 'nope' }])
      const noInstance = await request(port, method, '/services/svc/instances/10.0.0.1:80', { body: '{"weight":1}' })
      expect([noInstance.status, JSON.parse(noInstance.body)]).to.deep.equal([404, { error: 'unknown instance', service: 'svc', instance: '10.0.0.1:80' }])
    }
    expect(seen).to.have.length(4)
  })

  it('takes a weight within its bounds, a state, or both, and refuses every other body with the field at fault', async () => {
    const seen: [string, unknown][] = []
    const port = await admin({ services: [service('svc', [HOST], seen)] })
    const good: [string, object][] = [
      [`{"weight": ${WEIGHT_MIN}}`, { weight: WEIGHT_MIN }],
      [`{"weight": ${WEIGHT_MAX}}`, { weight: WEIGHT_MAX }],
      ['{"weight": 2.5}', { weight: 2.5 }],
      ['{"state": "up"}', { state: 'up' }],
      ['{"state": "draining"}', { state: 'draining' }],
      [`${' '.repeat(4096 - 13)}{"weight": 1}`, { weight: 1 }],
    ]
    for (const [body, override] of good) {
      const a = await request(port, 'PUT', '/services/svc/instances/127.0.0.1:9', { body })
      expect([a.status, JSON.parse(a.body).override], body.trim()).to.deep.equal([200, override])
    }
    expect(seen.map(([, o]) => o)).to.deep.equal(good.map(([, o]) => o))
    const weight = { field: 'weight', message: `weight must be a number ${WEIGHT_MIN}-${WEIGHT_MAX}` }
    const bad: [string, object][] = [
      ['', { message: 'body must be JSON' }],
      ['{"weight": ', { message: 'body must be JSON' }],
      ['null', { message: 'body must be a JSON object' }],
      ['3', { message: 'body must be a JSON object' }],
      ['"x"', { message: 'body must be a JSON object' }],
      ['[{"weight": 1}]', { message: 'body must be a JSON object' }],
      ['{}', { message: 'give weight, state or both' }],
      ['{"weight": 1, "extra": 2}', { field: 'extra', message: 'unknown field "extra" (weight and state are allowed)' }],
      [`{"weight": ${WEIGHT_MIN - 0.5}}`, weight],
      [`{"weight": ${WEIGHT_MAX + 0.5}}`, weight],
      ['{"weight": 1e308}', weight],
      ['{"weight": "2"}', weight],
      ['{"weight": null}', weight],
      ['{"state": "down"}', { field: 'state', message: 'state must be "up" or "draining"' }],
      ['{"weight": 1, "state": null}', { field: 'state', message: 'state must be "up" or "draining"' }],
    ]
    for (const [body, problem] of bad) {
      const a = await request(port, 'PUT', '/services/svc/instances/127.0.0.1:9', { body })
      expect([a.status, JSON.parse(a.body)], body).to.deep.equal([400, { error: 'bad override', ...problem }])
    }
    const large = await request(port, 'PUT', '/services/svc/instances/127.0.0.1:9', { body: `${' '.repeat(4096 - 12)}{"weight": 1}` })
    expect([large.status, JSON.parse(large.body)]).to.deep.equal([413, { error: 'body too large' }])
    expect(seen).to.have.length(good.length)
  })

  it('is ready only when discovery is, and names the services it still waits for', async () => {
    const status = (): Status => ({ session: { state: 'connected' }, services: { a: { synced: false }, b: { synced: true }, c: { synced: false } } }) as unknown as Status
    const ready = await request(await admin({ discovery: discovery(true, CONNECTED) }), 'GET', '/readyz')
    expect([ready.status, JSON.parse(ready.body)]).to.deep.equal([200, { ready: true, waiting: [] }])
    const waiting = await request(await admin({ discovery: discovery(false, status) }), 'GET', '/readyz')
    expect([waiting.status, JSON.parse(waiting.body)]).to.deep.equal([503, { ready: false, waiting: ['a', 'c'] }])
    const health = await request(await admin({ discovery: discovery(false, status) }), 'GET', '/healthz')
    expect([health.status, JSON.parse(health.body), health.headers['cache-control']]).to.deep.equal([200, { status: 'ok' }, 'no-store'])
  })

  it('serves the metrics text with its content type, 404 when metrics are off, 500 when they fail', async () => {
    const on = await request(await admin({ metrics: { text: () => Promise.resolve('x 1\n'), contentType: 'text/plain; version=0.0.4' } as MetricsSource }), 'GET', '/metrics')
    expect([on.status, on.body, on.headers['content-type'], on.headers['content-length']]).to.deep.equal([200, 'x 1\n', 'text/plain; version=0.0.4', '4'])
    const off = await request(await admin(), 'GET', '/metrics')
    expect([off.status, JSON.parse(off.body)]).to.deep.equal([404, { error: 'metrics are off' }])
    const failed = await request(await admin({ metrics: { text: () => Promise.reject(new Error('no registry')), contentType: 'text/plain' } as MetricsSource }), 'GET', '/metrics')
    expect([failed.status, JSON.parse(failed.body)]).to.deep.equal([500, { error: 'Error: no registry' }])
  })

  it('serves the status page whole with its security headers, and a HEAD without the body', async () => {
    const port = await admin()
    const get = await request(port, 'GET', '/')
    expect(get.status).to.equal(200)
    expect(get.headers).to.include({
      'content-type': 'text/html; charset=utf-8',
      'content-length': String(Buffer.byteLength(get.body)),
      'cache-control': 'no-store',
      'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
    })
    expect(get.body).to.match(/^<!doctype html>/i)
    const head = await request(port, 'HEAD', '/')
    expect([head.status, head.body, head.headers['content-length']]).to.deep.equal([200, '', get.headers['content-length']])
  })

  it("reports each service's sync state, age and instances in /upstreams", async () => {
    const lastSyncAt = Date.now() - 5_000
    const host = {
      key: '/svc/a',
      host: '10.0.0.1',
      port: 8080,
      hostPort: '10.0.0.1:8080',
      weight: 2,
      baseWeight: 2,
      state: 'up',
      ejectedUntil: 0,
      checkHealthy: true,
      override: null,
      healthy: true,
      inFlight: 1,
      requests: 10,
      failures: 2,
      latencyEwmaMs: 1.23456,
      endpoint: { meta: { format: 'curator', tls: true } },
    }
    const svc = { name: 'svc', config: { path: '/svc', strategy: { module: './mine.js' } }, balancer: { hosts: [host, { ...host, key: '/svc/b', ejectedUntil: 7, endpoint: { meta: { format: 'json' } } }] } } as unknown as Service
    const bare = { name: 'bare', config: { path: '/bare', strategy: { name: 'p2c' } }, balancer: { hosts: [] } } as unknown as Service
    const watch = { synced: true, pathExists: true, lastSyncAt, skipped: ['x'], warnings: ['w'], keptLast: false, held: 1, fromSnapshot: false }
    const instance = { key: '/svc/a', host: '10.0.0.1', port: 8080, weight: 2, state: 'up', override: null, healthy: true, ejected: false, inFlight: 1, requests: 10, failures: 2, latencyEwmaMs: 1.23, format: 'curator', scheme: 'https' }
    for (const [session, lastContactAgoMs] of [['connected', 0], ['disconnected', 4_000]] as const) {
      const status = () => ({ session: { state: session, lastContactAgoMs }, services: { svc: watch } }) as unknown as Status
      const src = { discovery: discovery(session === 'connected', status), services: [svc, bare] }
      const report = upstreamsReport(src) as { services: Record<string, Record<string, unknown>> }
      const age = report.services['svc']!['lastSyncAgoMs'] as number
      expect(age).to.be.at.least(5_000).and.below(600_000)
      expect(report).to.deep.equal({
        ready: session === 'connected',
        session,
        zookeeper: { state: session, lastContactAgoMs },
        services: {
          svc: {
            path: '/svc',
            strategy: './mine.js',
            synced: true,
            pathExists: true,
            lastSyncAgoMs: age,
            skipped: ['x'],
            warnings: ['w'],
            keptLast: false,
            held: 1,
            fromSnapshot: false,
            stale: session !== 'connected',
            dataAgeMs: session === 'connected' ? 0 : 4_000,
            instances: [instance, { ...instance, key: '/svc/b', state: 'ejected', ejected: true, format: 'json', scheme: 'http' }],
          },
          bare: { path: '/bare', strategy: 'p2c', synced: false, pathExists: false, lastSyncAgoMs: null, skipped: [], warnings: [], keptLast: false, held: 0, fromSnapshot: false, stale: session !== 'connected', dataAgeMs: lastContactAgoMs, instances: [] },
        },
      })
    }
    // Kept from the last good list, or read from the snapshot file: stale while connected too.
    for (const flag of ['keptLast', 'fromSnapshot']) {
      const status = () => ({ session: { state: 'connected', lastContactAgoMs: 0 }, services: { svc: { ...watch, [flag]: true } } }) as unknown as Status
      const report = upstreamsReport({ discovery: discovery(true, status), services: [svc] }) as { services: Record<string, Record<string, unknown>> }
      expect(report.services['svc']!['stale'], flag).to.equal(true)
      expect(report.services['svc']!['dataAgeMs'], flag).to.equal(0)
    }
    const unsynced = () => ({ session: { state: 'connected', lastContactAgoMs: 70 }, services: { svc: { ...watch, synced: false } } }) as unknown as Status
    expect((upstreamsReport({ discovery: discovery(true, unsynced), services: [svc] }) as { services: Record<string, Record<string, unknown>> }).services['svc']!['dataAgeMs']).to.equal(70)
    const served = await request(await admin({ discovery: discovery(true, CONNECTED), services: [bare] }), 'GET', '/upstreams')
    expect([served.status, JSON.parse(served.body).services.bare.path]).to.deep.equal([200, '/bare'])
  })
})
