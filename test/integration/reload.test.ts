// Hot reload (issue 13): SIGHUP and POST /reload switch services, routes and strategies for new
// requests without closing a client connection or the ZooKeeper session; a bad or restart-only
// config is refused with its reasons and the running one stays.

import { expect } from 'chai'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import http from 'node:http'
import path from 'node:path'
import { loadConfig } from '../../lib/config.js'
import { putNode, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'
import type { Upstream } from '../support/helpers.js'
import { spawnProxy } from '../support/wire.js'
import { createProxy } from '../../lib/proxy.js'
import { silentLogger } from '../../lib/log.js'

interface Report {
  zookeeper: { sessionId: string }
  services: Record<string, { strategy: string; instances: { port: number; override: object | null }[] }>
}

describe('hot reload (real ZooKeeper, real upstreams)', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()
  const closers = useClosers()

  async function setUp() {
    const ups: Upstream[] = []
    for (const name of ['a', 'b']) {
      const u = await startUpstream(name)
      closers.push(() => u.close())
      ups.push(u)
    }
    const svc = uniquePath('reload')
    for (const u of ups) await putNode(ctx.admin, `${svc}/${u.name}`, { host: '127.0.0.1', port: u.port })
    const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-reload-'))
    closers.push(async () => rmSync(dir, { recursive: true, force: true }))
    const file = path.join(dir, 'proxy.json')
    const base = {
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000 },
      log: { level: 'silent' },
    }
    const write = (services: object[]) => writeFileSync(file, JSON.stringify({ ...base, services }))
    write([{ name: 'example', path: svc, strategy: 'round-robin' }])
    const p = await createProxy(await loadConfig(file), { logger: silentLogger, configFile: file })
    await p.start()
    closers.push(() => p.close())
    await waitFor(() => p.ready && p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const port = p.address().port
    const adminPort = p.adminAddress()!.port
    const report = async () => (await (await fetch(`http://127.0.0.1:${adminPort}/upstreams`)).json()) as Report
    const reload = async () => {
      const r = await fetch(`http://127.0.0.1:${adminPort}/reload`, { method: 'POST' })
      return { status: r.status, body: (await r.json()) as Record<string, unknown> }
    }
    return { ups, svc, file, write, p, port, adminPort, report, reload }
  }

  /** Keep-alive client traffic: `n` requests over at most `sockets` connections, counting the connections opened. */
  function keepAliveClient(port: number, sockets: number) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: sockets })
    let opened = 0
    const create = agent.createConnection.bind(agent)
    agent.createConnection = (...args: Parameters<typeof create>) => {
      opened++
      return create(...args)
    }
    closers.push(async () => agent.destroy())
    const get = (p = '/') =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: p, agent }, (res) => {
            let body = ''
            res.on('data', (c: Buffer) => (body += c))
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
          })
          .on('error', reject)
      })
    return { get, opened: () => opened }
  }

  it('switches the strategy on POST /reload, answering 200 with what changed, on the same session', async () => {
    const { ups, svc, write, port, report, reload } = await setUp()
    const client = keepAliveClient(port, 1)
    const before = await report()
    write([{ name: 'example', path: svc, strategy: 'weighted', weights: { [`127.0.0.1:${ups[0]!.port}`]: 3, [`127.0.0.1:${ups[1]!.port}`]: 1 } }])
    const r = await reload()
    expect(r).to.deep.equal({ status: 200, body: { reloaded: true, added: [], removed: [], changed: ['example'], unchanged: [] } })
    const split: Record<string, number> = {}
    for (let i = 0; i < 8; i++) {
      const b = (await client.get()).body
      split[b] = (split[b] ?? 0) + 1
    }
    expect(split).to.deep.equal({ a: 6, b: 2 })
    const after = await report()
    expect(after.services.example!.strategy).to.equal('weighted')
    expect(after.zookeeper.sessionId).to.equal(before.zookeeper.sessionId)
    expect(client.opened()).to.equal(1)
  })

  it('serves steady keep-alive traffic through reloads with no failed request and no connection closed', async () => {
    const { svc, write, port, reload } = await setUp()
    const client = keepAliveClient(port, 4)
    let stop = false
    const statuses: number[] = []
    const loops = [0, 1, 2, 3].map(async () => {
      while (!stop) statuses.push((await client.get()).status)
    })
    const second = uniquePath('reload-b')
    const upC = await startUpstream('c')
    closers.push(() => upC.close())
    await putNode(ctx.admin, `${second}/c`, { host: '127.0.0.1', port: upC.port })
    for (const services of [
      [{ name: 'example', path: svc, strategy: 'least-loaded' }],
      [{ name: 'example', path: svc, strategy: 'least-loaded' }, { name: 'other', path: second, match: { pathPrefix: '/other' } }],
      [{ name: 'example', path: svc, strategy: 'round-robin', retry: { attempts: 2 } }, { name: 'other', path: second, match: { pathPrefix: '/other' } }],
    ]) {
      write(services)
      expect((await reload()).status).to.equal(200)
      const at = statuses.length
      await waitFor(() => statuses.length >= at + 20, 'traffic after the reload')
    }
    // The service added by a reload is routed to as soon as its instances are read.
    await waitFor(async () => (await client.get('/other/x')).body === 'c', 'the new service')
    stop = true
    await Promise.all(loops)
    expect(statuses.length).to.be.at.least(60)
    expect(statuses.filter((s) => s !== 200)).to.deep.equal([])
    expect(client.opened()).to.equal(4)
  })

  it('refuses a bad config, and one that changes what needs a restart, and keeps serving the old one', async () => {
    const { file, port, adminPort, reload } = await setUp()
    const client = keepAliveClient(port, 1)
    writeFileSync(file, JSON.stringify({ services: [{ name: 'example', path: '/x', strategy: 'nope' }] }))
    const bad = await reload()
    expect(bad.status).to.equal(400)
    expect(bad.body.problems).to.deep.equal(['services[0].strategy: unknown strategy "nope"'])
    writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:1', admin: '127.0.0.1:0', zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000 }, log: { level: 'silent' }, services: [{ name: 'example', path: '/x' }] }))
    const restart = await reload()
    expect(restart.status).to.equal(400)
    expect(restart.body.problems).to.deep.equal(['listen: cannot change on a reload (restart to change it)'])
    expect((await client.get()).status).to.equal(200)
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()
    expect(metrics).to.include('zoo_proxy_config_reloads_total{result="refused"} 2')
    expect(metrics).to.include('zoo_proxy_config_reloads_total{result="ok"} 0')
  })

  it('refuses hostile files (nesting past the bound, a number JSON cannot write, 20,000 unknown keys) with 400 naming the field, and keeps serving (attack-check)', async () => {
    const { file, port, reload, report } = await setUp()
    const client = keepAliveClient(port, 1)
    const before = await report()
    const service = `{"name":"example","path":"/x"`
    for (const [text, first] of [
      [`{"services":[${service},"strategy":{"module":"./m.js","x":${'['.repeat(50_000)}${']'.repeat(50_000)}}}]}`, /^services\[0\]\.strategy\.x(\[0\])+: nested deeper than 32 levels$/],
      [`{"services":[${service},"timeoutMs":1e309}]}`, /^services\[0\]\.timeoutMs: expected milliseconds as a number, got Infinity \(too large\)$/],
      [`{${Array.from({ length: 20_000 }, (_, i) => `"k${i}":1`).join(',')},"services":[${service}}]}`, /^k0: unknown key/],
    ] as const) {
      writeFileSync(file, text)
      const bad = await reload()
      expect(bad.status).to.equal(400)
      expect((bad.body.problems as string[])[0]).to.match(first)
      expect((await client.get()).status).to.equal(200)
    }
    const after = await report()
    expect(Object.keys(after.services)).to.deep.equal(['example'])
    expect(after.services.example!.strategy).to.equal(before.services.example!.strategy)
    expect(after.zookeeper.sessionId).to.equal(before.zookeeper.sessionId)
  })

  it('keeps an unchanged service as it is, and run-time overrides across a reload that changes a service', async () => {
    const { ups, svc, write, p, adminPort, report, reload } = await setUp()
    const kept = p.services[0]!
    write([{ name: 'example', path: svc, strategy: 'round-robin' }])
    expect((await reload()).body).to.include({ reloaded: true })
    expect(p.services[0]).to.equal(kept)
    const b = `127.0.0.1:${ups[1]!.port}`
    expect((await fetch(`http://127.0.0.1:${adminPort}/services/example/instances/${b}`, { method: 'PUT', body: '{"weight": 0}' })).status).to.equal(200)
    write([{ name: 'example', path: svc, strategy: 'least-loaded' }])
    expect((await reload()).body).to.deep.include({ changed: ['example'] })
    expect(p.services[0]).not.to.equal(kept)
    const inst = (await report()).services.example!.instances.find((i) => i.port === ups[1]!.port)!
    expect(inst.override).to.deep.equal({ weight: 0 })
  })

  it('reloads on SIGHUP in the CLI, and refuses a bad file there too', async () => {
    const svc = uniquePath('hup')
    const u = await startUpstream('a')
    closers.push(() => u.close())
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: u.port })
    const zookeeper = { connect: ctx.zk.connectString, sessionTimeoutMs: 4000 }
    const proxy = await spawnProxy({ zookeeper, services: [{ name: 'example', path: svc }] })
    closers.push(() => proxy.stop())
    const upstreams = async () => (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/upstreams`)).json()) as Report
    const config = (services: object[]) => JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', log: { level: 'info' }, zookeeper, services })
    // The listen port was 0: a reload keeps it as the file says (the same 0), nothing to refuse.
    writeFileSync(proxy.configFile, config([{ name: 'example', path: svc, strategy: 'least-loaded' }]))
    proxy.child.kill('SIGHUP')
    await waitFor(async () => (await upstreams()).services.example!.strategy === 'least-loaded', 'the reload')
    writeFileSync(proxy.configFile, '{ not json')
    proxy.child.kill('SIGHUP')
    await waitFor(async () => (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text()).includes('zoo_proxy_config_reloads_total{result="refused"} 1'), 'the refusal')
    expect((await upstreams()).services.example!.strategy).to.equal('least-loaded')
    expect(proxy.exited).to.equal(null)
  })
})
