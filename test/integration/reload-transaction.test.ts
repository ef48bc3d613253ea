// A reload is a transaction (issue 21 items 5, 6, 10): everything is checked and the instances of
// every added or re-pathed service read before anything switches; a refused reload changes
// nothing; reloads run one at a time.

import { expect } from 'chai'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../../lib/config.js'
import type { Config } from '../../lib/config.js'
import { createProxy } from '../../lib/proxy.js'
import type { ReloadResult, ZooProxy } from '../../lib/proxy.js'
import { silentLogger } from '../../lib/log.js'
import { useCerts } from '../support/certs.js'
import { putNode, scrape, spawnNode, startUpstream, tempDir, uniquePath, useClosers, useZooKeeper, waitFor, waitThroughErrors } from '../support/helpers.js'

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))

interface Report {
  services: Record<string, { path: string; strategy: string; instances: { port: number }[] }>
}

describe('reload as a transaction (real ZooKeeper, real upstreams)', function () {
  this.timeout(90_000)
  const ctx = useZooKeeper()
  const closers = useClosers()
  const certs = useCerts()
  const other = useCerts('other')

  /** A service path holding one instance znode per name, each an upstream answering its name. */
  async function pathOf(prefix: string, names: readonly string[]): Promise<string> {
    const at = uniquePath(prefix)
    for (const name of names) {
      const u = await startUpstream(name)
      closers.push(() => u.close())
      await putNode(ctx.admin, `${at}/${name}`, { host: '127.0.0.1', port: u.port })
    }
    return at
  }

  /**
   * A proxy started from a config file the test rewrites (`write`), over HTTP or HTTPS, with a
   * keep-alive client of one connection (`get`) and the admin calls a test needs.
   */
  async function setUp(services: object[], extra: object = {}, deps: { onReload?: (c: Config) => void } = {}) {
    const dir = tempDir(closers, 'zoo-proxy-reload-tx-')
    const file = path.join(dir, 'proxy.json')
    const base = { listen: '127.0.0.1:0', admin: '127.0.0.1:0', zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000 }, log: { level: 'silent' }, ...extra }
    const write = (s: object[], more: object = {}) => writeFileSync(file, JSON.stringify({ ...base, ...more, services: s }))
    write(services)
    const p: ZooProxy = await createProxy(await loadConfig(file), { logger: silentLogger, configFile: file, ...deps })
    await p.start()
    closers.push(() => p.close())
    await waitFor(() => p.ready, 'proxy ready')
    const port = p.address().port
    const adminPort = p.adminAddress()!.port
    const tls = 'tls' in extra
    /** A keep-alive client of one connection of its own. */
    const client = () => {
      const agent = tls ? new https.Agent({ keepAlive: true, maxSockets: 1, ca: certs.ca }) : new http.Agent({ keepAlive: true, maxSockets: 1 })
      closers.push(async () => agent.destroy())
      return (at = '/') =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          ;(tls ? https : http)
            .get({ host: '127.0.0.1', port, path: at, agent }, (res) => {
              let body = ''
              res.on('data', (c: Buffer) => (body += c))
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
            })
            .on('error', reject)
        })
    }
    const get = client()
    const report = async () => (await (await fetch(`http://127.0.0.1:${adminPort}/upstreams`)).json()) as Report
    const reload = async () => {
      const r = await fetch(`http://127.0.0.1:${adminPort}/reload`, { method: 'POST' })
      return { status: r.status, body: (await r.json()) as Record<string, unknown> & Partial<ReloadResult> }
    }
    return { file, write, p, get, client, report, reload, adminPort }
  }

  /** Paths and strategies by service: what routing and discovery are on. */
  const shape = (r: Report) => Object.fromEntries(Object.entries(r.services).map(([name, s]) => [name, `${s.path} ${s.strategy} ${s.instances.length}`]))

  describe('certificates and keys that are readable but wrong', () => {
    /** Each bad set of files, the field it must be named by, and the config that points at them. */
    const cases = (dir: string): { what: string; field: string; tls?: object; upstreamTls?: object }[] => {
      const file = (name: string, text: string) => {
        writeFileSync(path.join(dir, name), text)
        return path.join(dir, name)
      }
      const garbage = file('garbage.pem', 'this is not PEM at all\n')
      const badBase64 = file('bad.crt', '-----BEGIN CERTIFICATE-----\nAAAAbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n')
      const empty = file('empty.pem', '')
      return [
        { what: 'a key of another certificate', field: 'tls.key', tls: { cert: certs.cert, key: other.key } },
        { what: 'a certificate file that is not PEM', field: 'tls.cert', tls: { cert: garbage, key: certs.key } },
        { what: 'a PEM certificate whose content is not one', field: 'tls.cert', tls: { cert: badBase64, key: certs.key } },
        { what: 'an empty certificate file', field: 'tls.cert', tls: { cert: empty, key: certs.key } },
        { what: 'a key file that is not a key', field: 'tls.key', tls: { cert: certs.cert, key: certs.cert } },
        { what: 'the key given as the certificate', field: 'tls.cert', tls: { cert: certs.key, key: certs.key } },
        { what: 'a CA file that holds no certificate', field: 'tls.ca', tls: { cert: certs.cert, key: certs.key, ca: garbage } },
        { what: 'an upstream CA that is not PEM', field: 'upstreamTls.ca', upstreamTls: { ca: garbage } },
        { what: 'an upstream client key of another certificate', field: 'upstreamTls.key', upstreamTls: { ca: certs.caCert, cert: certs.cert, key: other.key } },
      ]
    }

    it('are exit 2 naming the field, for check and for start alike, never a stack trace', async () => {
      const dir = tempDir(closers)
      for (const c of cases(dir)) {
        const file = path.join(dir, 'proxy.json')
        writeFileSync(
          file,
          JSON.stringify({ listen: '127.0.0.1:0', zookeeper: { connect: ctx.zk.connectString }, services: [{ name: 'example', path: '/x' }], ...(c.tls && { tls: c.tls }), ...(c.upstreamTls && { upstreamTls: c.upstreamTls }) }),
        )
        for (const args of [['check', '--config', file], ['--config', file]]) {
          const run = spawnNode(closers, [CLI, ...args])
          const code = await run.exited
          const said = `${c.what}, ${args[0]}: ${run.stderr()}`
          expect(code, said).to.equal(2)
          expect(run.stderr(), said).to.match(new RegExp(`^${c.field.replace(/[.[\]]/g, '\\$&')}: `, 'm'))
          expect(run.stderr(), said).not.to.match(/^\s+at /m)
        }
      }
    })

    it('refuse a reload, which changes nothing: routes, default route, paths, metrics', async () => {
      const first = await pathOf('tls-a', ['a'])
      const second = await pathOf('tls-b', ['b'])
      const tls = { cert: certs.cert, key: certs.key }
      const services = [
        { name: 'example', path: first },
        { name: 'api', path: second, match: { pathPrefix: '/api' } },
      ]
      const { write, get, report, reload, adminPort } = await setUp(services, { tls })
      const before = shape(await report())
      const dir = tempDir(closers)
      let refused = 0
      for (const c of cases(dir)) {
        // Every other change a reload can make, beside the bad files: a moved default route, a
        // new strategy, a removed service and an added one.
        write(
          [
            { name: 'example', path: second, strategy: 'least-loaded' },
            { name: 'extra', path: first, match: { pathPrefix: '/extra' } },
          ],
          { ...(c.tls && { tls: c.tls }), ...(c.upstreamTls && { upstreamTls: c.upstreamTls }) },
        )
        const r = await reload()
        refused++
        expect(r.status, c.what).to.equal(400)
        expect(r.body.reloaded).to.equal(false)
        expect((r.body.problems as string[]).some((l) => l.startsWith(`${c.field}: `)), `${c.what}: ${JSON.stringify(r.body.problems)}`).to.equal(true)
        expect(await get('/'), c.what).to.deep.equal({ status: 200, body: 'a' })
        expect(await get('/api/x'), c.what).to.deep.equal({ status: 200, body: 'b' })
        expect(await get('/extra'), c.what).to.deep.equal({ status: 200, body: 'a' })
        expect(shape(await report()), c.what).to.deep.equal(before)
        const metrics = await scrape(adminPort)
        expect(metrics).to.include(`zoo_proxy_config_reloads_total{result="refused"} ${refused}`)
        expect(metrics).to.include('zoo_proxy_config_reloads_total{result="ok"} 0')
        expect(metrics).not.to.include('service="extra"')
      }
      // And the same file with the right certificate goes through.
      write([{ name: 'example', path: second, strategy: 'least-loaded' }, { name: 'extra', path: first, match: { pathPrefix: '/extra' } }], { tls })
      expect((await reload()).status).to.equal(200)
      expect(await get('/')).to.deep.equal({ status: 200, body: 'b' })
      expect(await get('/extra')).to.deep.equal({ status: 200, body: 'a' })
    })
  })

  it('moves services between paths, switches strategies, adds and removes services 20 times under keep-alive load with no failed request', async () => {
    const paths = [await pathOf('move-a', ['a1', 'a2']), await pathOf('move-b', ['b1', 'b2']), await pathOf('move-c', ['c1'])]
    const names = [['a1', 'a2'], ['b1', 'b2'], ['c1']]
    const strategies = ['round-robin', 'least-loaded', 'random', 'weighted', 'consistent-hash']
    const { write, get, client, reload } = await setUp([
      { name: 'example', path: paths[0]! },
      { name: 'api', path: paths[1]!, match: { pathPrefix: '/api' } },
    ])
    // The load: sequential keep-alive requests on one connection of its own.
    const load = client()
    const failures: string[] = []
    let done = 0
    let stop = false
    const loop = (async () => {
      while (!stop) {
        for (const at of ['/', '/api/x']) {
          try {
            const r = await load(at)
            if (r.status !== 200) failures.push(`${at}: ${r.status} ${r.body}`)
          } catch (err) {
            failures.push(`${at}: ${String(err)}`)
          }
          done++
        }
      }
    })()
    for (let i = 1; i <= 20; i++) {
      const e = i % 3
      const a = (i + 1) % 3
      const services: object[] = [
        { name: 'example', path: paths[e]!, strategy: strategies[i % strategies.length] },
        { name: 'api', path: paths[a]!, strategy: strategies[(i + 2) % strategies.length], match: { pathPrefix: '/api' } },
      ]
      if (i % 2 === 0) services.push({ name: 'extra', path: paths[(i + 2) % 3]!, match: { pathPrefix: '/extra' } })
      write(services)
      const r = await reload()
      expect(r.status, JSON.stringify(r.body)).to.equal(200)
      // Warmed: the first request after the switch is already answered from the new path.
      expect(names[e]).to.include((await get('/')).body)
      expect(names[a]).to.include((await get('/api/x')).body)
      if (i % 2 === 0) expect(names[(i + 2) % 3]).to.include((await get('/extra')).body)
      const at = done
      await waitFor(() => done >= at + 10, 'load between two reloads')
    }
    stop = true
    await loop
    expect(failures).to.deep.equal([])
    expect(done).to.be.at.least(200)
  })

  it('keeps in the snapshot file only the services the reload left, so a renamed one is not read back at the next start', async () => {
    const dir = tempDir(closers, 'zoo-proxy-snap-')
    const snapshotFile = path.join(dir, 'snap.json')
    const one = await pathOf('snap-one', ['one'])
    const two = await pathOf('snap-two', ['two'])
    const zk = { connect: ctx.zk.connectString, sessionTimeoutMs: 4000, snapshotFile }
    const { write, reload } = await setUp([{ name: 'a', path: one }], { zookeeper: zk })
    const names = async () => {
      const file = JSON.parse(readFileSync(snapshotFile, 'utf8')) as { services: Record<string, { path: string }> }
      return Object.fromEntries(Object.entries(file.services).map(([n, s]) => [n, s.path]))
    }
    await waitFor(async () => existsSync(snapshotFile) && JSON.stringify(await names()) === JSON.stringify({ a: one }), 'the first snapshot')
    write([{ name: 'a2', path: one }, { name: 'b', path: two, match: { pathPrefix: '/b' } }], { zookeeper: zk })
    expect((await reload()).status).to.equal(200)
    await waitFor(async () => JSON.stringify(await names()) === JSON.stringify({ a2: one, b: two }), 'a renamed and b added in the file')
    write([{ name: 'a', path: one }], { zookeeper: zk })
    expect((await reload()).status).to.equal(200)
    await waitFor(async () => JSON.stringify(await names()) === JSON.stringify({ a: one }), 'only a in the file')
  })

  it('runs overlapping reloads one after the other, the second starting from what the first left', async () => {
    const first = await pathOf('serial-a', ['a'])
    const second = await pathOf('serial-b', ['b'])
    const order: string[] = []
    const { p, file } = await setUp([{ name: 'example', path: first }], {}, { onReload: (c) => order.push(c.services.map((s) => `${s.name}:${s.strategy.name}`).join(',')) })
    const raw = { listen: '127.0.0.1:0', admin: '127.0.0.1:0', zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000 }, log: { level: 'silent' } }
    const config = async (services: object[]) => {
      writeFileSync(file, JSON.stringify({ ...raw, services }))
      return loadConfig(file)
    }
    // The first adds a service, so it waits on ZooKeeper to read the new path; the second is asked
    // meanwhile. Run together, the second would see "other" as new too.
    const adding = await config([{ name: 'example', path: first }, { name: 'other', path: second, match: { pathPrefix: '/other' } }])
    const changing = await config([{ name: 'example', path: first, strategy: 'least-loaded' }, { name: 'other', path: second, match: { pathPrefix: '/other' } }])
    const [one, two] = await Promise.all([p.reload(adding), p.reload(changing)])
    expect(one).to.deep.equal({ added: ['other'], removed: [], changed: [], unchanged: ['example'] })
    expect(two).to.deep.equal({ added: [], removed: [], changed: ['example'], unchanged: ['other'] })
    expect(order).to.deep.equal(['example:round-robin,other:round-robin', 'example:least-loaded,other:round-robin'])

    // A refused one in the queue leaves the next one to start from the state before it.
    const bad = await config([{ name: 'example', path: first }, { name: 'other', path: '/elsewhere', match: { pathPrefix: '/other' } }])
    const worse = { ...bad, listen: { host: '127.0.0.1', port: 1 } } as Config
    const back = await config([{ name: 'example', path: first }])
    const [refused, removed] = await Promise.allSettled([p.reload(worse), p.reload(back)])
    expect(refused.status).to.equal('rejected')
    expect(removed).to.deep.equal({ status: 'fulfilled', value: { added: [], removed: ['other'], changed: ['example'], unchanged: [] } })
  })

  it('serialises two POST /reload asked at once: one applies the file, the other finds nothing left to change', async () => {
    const first = await pathOf('post-a', ['a'])
    const second = await pathOf('post-b', ['b'])
    const { write, reload, get } = await setUp([{ name: 'example', path: first }])
    write([{ name: 'example', path: first }, { name: 'other', path: second, match: { pathPrefix: '/other' } }])
    const both = await Promise.all([reload(), reload()])
    const bodies = both.map((r) => ({ status: r.status, added: r.body.added, unchanged: r.body.unchanged })).sort((x, y) => String(x.added).localeCompare(String(y.added)))
    expect(bodies).to.deep.equal([
      { status: 200, added: [], unchanged: ['example', 'other'] },
      { status: 200, added: ['other'], unchanged: ['example'] },
    ])
    expect(await get('/other')).to.deep.equal({ status: 200, body: 'b' })
  })

  it('warms a path that does not exist or has no instance at once: the service is there, answering 503 until one appears', async () => {
    const first = await pathOf('empty-a', ['a'])
    const missing = uniquePath('missing')
    const empty = uniquePath('empty')
    await putNode(ctx.admin, empty)
    const { write, reload, get, report } = await setUp([{ name: 'example', path: first }])
    write([
      { name: 'example', path: first },
      { name: 'gone', path: missing, match: { pathPrefix: '/gone' } },
      { name: 'bare', path: empty, match: { pathPrefix: '/bare' } },
    ])
    const r = await reload()
    expect(r.status).to.equal(200)
    expect(r.body.added).to.deep.equal(['gone', 'bare'])
    expect((await get('/gone')).status).to.equal(503)
    expect((await get('/bare')).status).to.equal(503)
    expect(await get('/')).to.deep.equal({ status: 200, body: 'a' })
    expect(shape(await report())).to.deep.include({ gone: `${missing} round-robin 0`, bare: `${empty} round-robin 0` })
    const u = await startUpstream('late')
    closers.push(() => u.close())
    await putNode(ctx.admin, `${missing}/late`, { host: '127.0.0.1', port: u.port })
    await waitFor(async () => (await get('/gone')).body === 'late', 'the instance that appeared')
  })

  it('refuses a reload whose new path ZooKeeper does not answer in time, with the reason, and changes nothing', async () => {
    const first = await pathOf('deadline-a', ['a'])
    const second = await pathOf('deadline-b', ['b'])
    const { write, reload, get, report, adminPort } = await setUp([{ name: 'example', path: first }])
    const before = shape(await report())
    write([{ name: 'example', path: second }, { name: 'other', path: first, match: { pathPrefix: '/other' } }], { warmingTimeoutMs: 300 })
    const zk = ctx.zk.nodes[0]!
    zk.freeze()
    let r: Awaited<ReturnType<typeof reload>>
    try {
      r = await reload()
    } finally {
      zk.thaw()
    }
    expect(r.status).to.equal(503)
    expect(r.body).to.include({ reloaded: false, code: 'ZP_ERR_ZK_TIMEOUT' })
    expect(r.body.message).to.match(/within 300 ms .*example \(.*\), other \(/)
    expect(shape(await report())).to.deep.equal(before)
    expect(await get('/')).to.deep.equal({ status: 200, body: 'a' })
    expect((await get('/other')).body).to.equal('a')
    const metrics = await scrape(adminPort)
    expect(metrics).to.include('zoo_proxy_config_reloads_total{result="refused"} 1')
    expect(metrics).not.to.include('service="other"')
    // Once ZooKeeper answers again, the same file goes through.
    await waitThroughErrors(async () => (await reload()).status === 200, 'the reload once zookeeper answers', 20_000, 200)
    expect(await get('/')).to.deep.equal({ status: 200, body: 'b' })
    expect(await get('/other')).to.deep.equal({ status: 200, body: 'a' })
  })
})
