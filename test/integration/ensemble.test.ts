// ZooKeeper in production shape: a real 3-node ensemble on loopback (tickTime 500), steady load
// through the proxy while servers die, freeze, lose quorum, and the proxy's session expires.

import { expect } from 'chai'
import { writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ZkSession } from '../../lib/discovery/zk-session.js'
import { silentLogger } from '../../lib/log.js'
import { fourLetterWord } from '../../scripts/zookeeper.js'
import type { ZkServerNode } from '../../scripts/zookeeper.js'
import {
  deadPort,
  expireSession,
  listeningPorts,
  makeConfig,
  putNode,
  send,
  spawnNode,
  startProxy,
  startUpstream,
  tempDir,
  uniquePath,
  useClosers,
  useZooKeeper,
  waitFor,
  waitThroughErrors,
} from '../support/helpers.js'
import type { Upstream } from '../support/helpers.js'
import { TXN, readTransactions } from '../support/zk-log.js'

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))

/** Sequential GETs from `workers` loops until stopped; counts every status (0 = connection error). */
function steadyLoad(port: number, workers = 4, path = '/') {
  const statuses: Record<number, number> = {}
  const bodies = new Set<string>()
  let stopped = false
  const loops = Array.from({ length: workers }, async () => {
    while (!stopped) {
      const r = await send(port, path).catch(() => ({ status: 0, body: '' }))
      statuses[r.status] = (statuses[r.status] ?? 0) + 1
      bodies.add(r.body)
      await new Promise((res) => setTimeout(res, 2))
    }
  })
  return {
    statuses,
    bodies,
    async stop() {
      stopped = true
      await Promise.all(loops)
      return statuses
    },
  }
}

/** The server a session is attached to, found through the `cons` four-letter word. */
async function serverOf(nodes: readonly ZkServerNode[], sessionId: string): Promise<ZkServerNode | undefined> {
  const sid = `0x${sessionId.replace(/^0+/, '')}`
  for (const n of nodes) if ((await fourLetterWord(n.clientPort, 'cons')).includes(`sid=${sid}`)) return n
  return undefined
}

describe('ZooKeeper ensemble (3 real servers): no failed request through server loss, quorum loss, expiry, freeze', function () {
  this.timeout(90_000)
  const ctx = useZooKeeper(3)
  const closers = useClosers()
  beforeEach(async () => {
    await waitFor(() => ctx.admin.state === 'connected', 'the test session', 20_000)
  })
  // Whatever a test did to the servers, and however it ended, the next one starts with all three.
  afterEach(async function () {
    this.timeout(60_000)
    for (const n of ctx.zk.nodes) n.thaw()
    for (const n of ctx.zk.nodes) n.start()
    await ctx.zk.waitServing(30_000)
  })

  async function upstream(name: string): Promise<Upstream> {
    const u = await startUpstream(name)
    closers.push(() => u.close())
    return u
  }

  async function setup(sessionTimeoutMs = 3000) {
    const svc = uniquePath()
    const a = await upstream('a')
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port })
    const session = new ZkSession({ connect: ctx.zk.connectString, sessionTimeoutMs, logger: silentLogger })
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path: svc }], { zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs } }), { session })
    closers.push(() => p.close())
    await waitFor(async () => (await send(p.port)).body === 'a', 'first instance')
    return { svc, p, session }
  }

  /** After recovery, a newly registered instance must get traffic. */
  async function newInstanceGetsTraffic(svc: string, port: number, name: string): Promise<void> {
    const u = await upstream(name)
    await waitFor(() => ctx.admin.state === 'connected', 'the test session back', 30_000)
    await waitThroughErrors(() => putNode(ctx.admin, `${svc}/${name}`, { host: '127.0.0.1', port: u.port }).then(() => true), 'registering', 20_000)
    await waitFor(async () => (await send(port)).body === name || (await send(port)).body === name, `${name} to get traffic`, 30_000)
  }

  it('loses no request when the leader is SIGKILLed', async () => {
    const { svc, p } = await setup()
    const load = steadyLoad(p.port)
    const leader = await ctx.zk.leader()
    expect(leader).to.not.equal(undefined)
    await leader!.stop('SIGKILL')
    await ctx.zk.waitServing(30_000, 2)
    await newInstanceGetsTraffic(svc, p.port, 'after-leader')
    expect(await load.stop()).to.have.keys('200')
  })

  it('keeps routing through a lost quorum and picks up changes made after it is back', async () => {
    const { svc, p, session } = await setup()
    const load = steadyLoad(p.port)
    const [, second, third] = ctx.zk.nodes
    await second!.stop('SIGKILL')
    await third!.stop('SIGKILL')
    await waitFor(() => session.state !== 'connected', 'the proxy to lose its session connection', 20_000)
    // Disconnected for longer than the session timeout, the proxy gives its session up and starts
    // another: the point where a careless proxy would empty the service.
    await waitFor(() => session.state === 'connecting', 'the proxy to give its session up', 20_000)
    const report = p.upstreams() as { services: { example: { stale: boolean } } }
    expect(report.services.example.stale).to.equal(true)
    expect((await send(p.port)).body).to.equal('a')
    second!.start()
    third!.start()
    await ctx.zk.waitServing(30_000)
    await newInstanceGetsTraffic(svc, p.port, 'after-quorum')
    expect(await load.stop()).to.have.keys('200')
    await waitFor(() => !(p.upstreams() as { services: { example: { stale: boolean } } }).services.example.stale, 'fresh data')
  })

  it('loses no request when its own session is forced to expire', async () => {
    const { svc, p, session } = await setup()
    const load = steadyLoad(p.port)
    const before = session.info().sessions
    await expireSession(ctx.zk.connectString, () => session.credentials(), () => session.info().sessions > before)
    await newInstanceGetsTraffic(svc, p.port, 'after-expiry')
    expect(await load.stop()).to.have.keys('200')
  })

  it('moves off a frozen (SIGSTOPped) server by itself and loses no request', async () => {
    const { svc, p, session } = await setup(6000)
    const load = steadyLoad(p.port)
    const attached = await waitFor(() => serverOf(ctx.zk.nodes, session.info().sessionId), 'the server the proxy uses')
    attached.freeze()
    try {
      // The watchdog notices within ~2/3 of the session timeout and reconnects elsewhere (the same
      // session, unless the frozen one was the leader and the election outlasted the session).
      await waitFor(async () => {
        const now = await serverOf(ctx.zk.nodes.filter((n) => n !== attached), session.info().sessionId)
        return now !== undefined && session.state === 'connected'
      }, 'the proxy to move to another server', 30_000)
      await newInstanceGetsTraffic(svc, p.port, 'after-freeze')
    } finally {
      attached.thaw()
    }
    expect(await load.stop()).to.have.keys('200')
  })

  it('keeps the last instances when a mass expiry empties the service, marked stale', async () => {
    const svc = uniquePath()
    const a = await upstream('a')
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port })
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path: svc }]))
    closers.push(() => p.close())
    await waitFor(async () => (await send(p.port)).body === 'a', 'first instance')
    await ctx.admin.remove(`${svc}/a`)
    await waitFor(() => (p.upstreams() as { services: { example: { keptLast: boolean } } }).services.example.keptLast, 'keepLastOnEmpty to kick in')
    expect((await send(p.port)).body).to.equal('a')
    const b = await upstream('b')
    await putNode(ctx.admin, `${svc}/b`, { host: '127.0.0.1', port: b.port })
    await waitFor(async () => (await send(p.port)).body === 'b', 'the new list')
    expect((p.upstreams() as { services: { example: { keptLast: boolean; stale: boolean } } }).services.example).to.include({ keptLast: false, stale: false })
  })

  it('serves from the snapshot file when it starts while ZooKeeper is down', async () => {
    const svc = uniquePath()
    const a = await upstream('a')
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port })
    const snapshotFile = path.join(tempDir(closers, 'zoo-proxy-snap-'), 'instances.json')
    const first = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path: svc }], { zookeeper: { connect: ctx.zk.connectString, snapshotFile } }))
    closers.push(() => first.close())
    await waitFor(async () => (await send(first.port)).body === 'a', 'first proxy')
    await first.close()
    // A second proxy pointed at a ZooKeeper that is not there.
    const dead = `127.0.0.1:${await deadPort(closers)}`
    const second = await startProxy(await makeConfig(dead, [{ name: 'example', path: svc }], { zookeeper: { connect: dead, snapshotFile } }))
    closers.push(() => second.close())
    expect((await send(second.port)).body).to.equal('a')
    expect((second.upstreams() as { services: { example: { fromSnapshot: boolean } } }).services.example.fromSnapshot).to.equal(true)
  })
})

/** True once a new connection to `port` is refused. */
function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => (s.destroy(), resolve(false)))
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'))
  })
}

describe('zoo-proxy register sidecar and proxy shutdown', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()
  const closers = useClosers()

  const cli = (args: string[]) => spawnNode(closers, [CLI, ...args])

  it('registers while the check passes, drains on SIGTERM with no failed request', async () => {
    const svc = uniquePath()
    let healthy = true
    const a = await startUpstream('a', (req, res) => {
      if (req.url === '/health') {
        res.writeHead(healthy ? 200 : 503)
        res.end()
        return
      }
      res.end('a')
    })
    const b = await startUpstream('b')
    closers.push(() => a.close(), () => b.close())
    await putNode(ctx.admin, `${svc}/b`, { host: '127.0.0.1', port: b.port })
    const drainMs = 500
    const sidecar = cli(['register', '--zookeeper', ctx.zk.connectString, '--path', svc, '--host', '127.0.0.1', '--port', String(a.port), '--check', `http://127.0.0.1:${a.port}/health`, '--check-interval-ms', '100', '--drain-ms', String(drainMs), '--session-timeout-ms', '2000'])
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path: svc }]))
    closers.push(() => p.close())
    const node = `${svc}/127.0.0.1:${a.port}`
    await waitFor(async () => (await send(p.port)).body === 'a', 'the sidecar instance to get traffic')

    // A failing health check deregisters it; passing again brings it back.
    healthy = false
    await waitFor(async () => !(await ctx.admin.exists(node)), 'deregistration on a failing check')
    healthy = true
    await waitFor(() => ctx.admin.exists(node), 'registration when the check passes again')

    // The node holds our JSON format.
    const data = await ctx.admin.getData(node)
    expect(JSON.parse(data!.toString())).to.include({ state: 'up', port: a.port })

    // SIGTERM: draining first (no new requests), then the node goes, exit 0, no failed request.
    const load = steadyLoad(p.port, 3)
    await waitFor(() => load.bodies.has('a'), 'load reaching a')
    sidecar.child.kill('SIGTERM')
    expect(await sidecar.exited).to.equal(0)
    expect(await ctx.admin.exists(node)).to.equal(false)
    expect(await load.stop()).to.have.keys('200')

    // What ZooKeeper recorded, on its own clock: the last write before the delete said draining,
    // and it stood for at least --drain-ms.
    const changes = readTransactions(ctx.zk.nodes[0]!.dataDir).filter((t) => t.path === node)
    const deleted = changes.findLastIndex((t) => t.type === TXN.delete)
    expect(deleted).to.equal(changes.length - 1)
    const draining = changes[deleted - 1]!
    expect(draining.type).to.equal(TXN.setData)
    expect(JSON.parse(draining.data!.toString())).to.include({ state: 'draining', port: a.port })
    expect(changes[deleted]!.time - draining.time).to.be.at.least(drainMs)
  })

  it('re-registers after its session is forced to expire', async () => {
    const svc = uniquePath()
    const { register } = await import('../../lib/discovery/registry.js')
    const reg = await register({ connect: ctx.zk.connectString, path: svc, host: '127.0.0.1', port: 9999, sessionTimeoutMs: 2000 })
    closers.push(() => reg.close())
    const before = reg.session.info().sessions
    await expireSession(ctx.zk.connectString, () => reg.session.credentials(), () => reg.session.info().sessions > before)
    await waitFor(async () => reg.registered && (await ctx.admin.exists(reg.znode)), 'the node to be back')
  })

  it('finishes every in-flight request on SIGTERM, refuses new ones, and exits 0', async () => {
    const svc = uniquePath()
    // Holds every answer until the test lets them go: they are in flight for as long as it wants.
    let release: () => void = () => {}
    const released = new Promise<void>((r) => (release = r))
    const slow = await startUpstream('slow', (req, res) => void released.then(() => res.end(req.url === '/ready' ? 'ready' : 'done')))
    closers.push(() => slow.close())
    await putNode(ctx.admin, `${svc}/slow`, { host: '127.0.0.1', port: slow.port })
    const file = path.join(tempDir(closers, 'zoo-proxy-term-'), 'proxy.json')
    writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', zookeeper: { connect: ctx.zk.connectString }, log: { level: 'info' }, services: [{ name: 'example', path: svc }] }))
    const proxy = cli(['--config', file])
    const { port, adminPort } = await listeningPorts(proxy)
    await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200, 'the proxy to be ready')
    const inFlight = Array.from({ length: 10 }, () => send(port, '/', { headers: { connection: 'close' } }))
    await waitFor(() => slow.hits === 10, 'requests to reach the upstream')
    proxy.child.kill('SIGTERM')
    await waitFor(() => refuses(port), 'the port to refuse new connections')
    expect(proxy.child.exitCode).to.equal(null)
    release()
    const results = await Promise.all(inFlight)
    expect(results.map((r) => [r.status, r.body])).to.deep.equal(Array(10).fill([200, 'done']))
    expect(await proxy.exited).to.equal(0)
  })
})
