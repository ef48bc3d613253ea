import { expect } from 'chai'
import net from 'node:net'
import {
  deadPort,
  expireSession,
  makeConfig,
  putNode,
  recordingLogger,
  send,
  spread,
  startProxy,
  startUpstream,
  uniquePath,
  useZooKeeper,
  waitFor,
  useClosers,
} from '../support/helpers.js'
import type { Upstream } from '../support/helpers.js'
import { ZkSession } from '../../lib/discovery/zk-session.js'
import type { ProxyDeps } from '../../lib/proxy.js'

describe('discovery (real ZooKeeper, live traffic)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  async function upstreams(...names: string[]): Promise<Upstream[]> {
    const ups = await Promise.all(names.map((n) => startUpstream(n)))
    for (const u of ups) closers.push(() => u.close())
    return ups
  }

  async function proxyFor(path: string, deps: ProxyDeps = {}) {
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path }]), deps)
    closers.push(() => p.close())
    return p
  }

  const answers = async (port: number, n = 12) => Object.keys(await spread(port, n)).sort().join(',')

  it('reads all four znode formats', async () => {
    const path = uniquePath()
    const [ours, curator, serverset, text, named] = await upstreams('ours', 'curator', 'serverset', 'text', 'named')
    await putNode(ctx.admin, `${path}/ours`, { host: '127.0.0.1', port: ours!.port, weight: 1, state: 'up' })
    await putNode(ctx.admin, `${path}/3f1e-curator`, {
      name: 'example',
      id: '3f1e',
      address: '127.0.0.1',
      port: curator!.port,
      sslPort: null,
      payload: null,
      registrationTimeUTC: Date.now(),
      serviceType: 'DYNAMIC',
      uriSpec: null,
    })
    await putNode(ctx.admin, `${path}/member_0000000001`, {
      serviceEndpoint: { host: '127.0.0.1', port: serverset!.port },
      additionalEndpoints: {},
      status: 'ALIVE',
      shard: 0,
    })
    await putNode(ctx.admin, `${path}/plain`, `127.0.0.1:${text!.port}`)
    await putNode(ctx.admin, `${path}/127.0.0.1:${named!.port}`, '')
    const p = await proxyFor(path)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 5, 'five instances')
    expect(await answers(p.port, 10)).to.equal('curator,named,ours,serverset,text')
  })

  it('sees an instance join, change its data and leave, with live traffic', async () => {
    const path = uniquePath()
    const [a, b, c] = await upstreams('a', 'b', 'c')
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: a!.port })
    const p = await proxyFor(path)
    expect(await answers(p.port)).to.equal('a')

    await putNode(ctx.admin, `${path}/b`, { host: '127.0.0.1', port: b!.port })
    await waitFor(async () => (await answers(p.port, 4)) === 'a,b', 'b to join')

    // The data of b changes to point at c: the same instance key, a new address.
    await ctx.admin.setData(`${path}/b`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: c!.port })))
    await waitFor(async () => (await answers(p.port, 4)) === 'a,c', 'b to move to c')

    await ctx.admin.setData(`${path}/b`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: c!.port, state: 'draining' })))
    await waitFor(async () => (await answers(p.port, 4)) === 'a', 'b to drain')

    await ctx.admin.remove(`${path}/a`)
    await waitFor(async () => (await send(p.port)).status === 503, 'a to leave (only a draining instance left)')
  })

  it('skips a malformed instance with one warning and keeps serving the others', async () => {
    const path = uniquePath()
    const [a] = await upstreams('a')
    await putNode(ctx.admin, `${path}/good`, { host: '127.0.0.1', port: a!.port })
    await putNode(ctx.admin, `${path}/bad`, '{"port": "nope"')
    const logger = recordingLogger()
    const p = await proxyFor(path, { logger })
    expect(await answers(p.port, 4)).to.equal('a')
    // Another change in the service re-lists it; the bad node must not warn again.
    await putNode(ctx.admin, `${path}/other`, 'also bad')
    await waitFor(() => logger.lines.some((l) => l.msg.includes('malformed') && (l.obj as { znode: string }).znode.endsWith('/other')), 'warning for other')
    await ctx.admin.setData(`${path}/good`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: a!.port, weight: 2 })))
    await waitFor(() => p.services[0]!.balancer.hosts[0]!.weight === 2, 'weight change')
    const warnings = logger.lines.filter((l) => l.level === 'warn' && l.msg.includes('malformed') && (l.obj as { znode: string }).znode.endsWith('/bad'))
    expect(warnings).to.have.length(1)
    const report = p.upstreams() as { services: { example: { skipped: { name: string }[] } } }
    expect(report.services.example.skipped.map((s) => s.name).sort()).to.deep.equal(['bad', 'other'])
    expect(await answers(p.port, 4)).to.equal('a')
  })

  it('keeps an instance whose znode weight is out of range, clamped to 256 with one warning shown in /upstreams (issue 21)', async () => {
    const path = uniquePath()
    const [a, b] = await upstreams('a', 'b')
    // 1e308 once gave the consistent-hash ring 1.6e310 points and the proxy ran out of heap.
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: a!.port, weight: 1e308 })
    await putNode(ctx.admin, `${path}/b`, `{"address":"127.0.0.1","port":${b!.port},"payload":{"metadata":{"weight":"-3"}}}`)
    const logger = recordingLogger()
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path, strategy: 'consistent-hash' }]), { logger })
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'both instances')
    expect(p.services[0]!.balancer.hosts.map((h) => h.weight)).to.deep.equal([256, 0])
    // b is kept at weight 0 (no new requests): every request goes to a.
    expect(await answers(p.port, 6)).to.equal('a')
    const report = p.upstreams() as { services: { example: { skipped: unknown[]; warnings: { name: string; reason: string }[] } } }
    expect(report.services.example.skipped).to.deep.equal([])
    expect(report.services.example.warnings).to.deep.equal([
      { name: 'a', reason: 'weight 1e+308 is outside 0-256, clamped to 256' },
      { name: 'b', reason: 'weight -3 is outside 0-256, clamped to 0' },
    ])
    // A re-read of the same data does not warn again; new data that is in range clears the warning.
    await ctx.admin.setData(`${path}/b`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: b!.port, weight: 1 })))
    await waitFor(() => p.services[0]!.balancer.hosts[1]!.weight === 1, 'b back in range')
    expect((p.upstreams() as typeof report).services.example.warnings.map((w) => w.name)).to.deep.equal(['a'])
    expect(logger.lines.filter((l) => l.level === 'warn' && l.msg.includes('out of range'))).to.have.length(2)
    // Affinity by client address: every request of this client still goes to one instance.
    expect(['a', 'b']).to.include(await answers(p.port, 4))
  })

  it('treats a missing path as an empty service that starts working when it appears', async () => {
    const path = uniquePath('late')
    const [a] = await upstreams('a')
    const p = await proxyFor(path)
    expect(p.ready).to.equal(true)
    expect((await send(p.port)).status).to.equal(503)
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: a!.port })
    await waitFor(async () => (await send(p.port)).body === 'a', 'the instance under the new path')
  })

  it('keeps routing to the last known instances while ZooKeeper is down, and catches up after', async function () {
    this.timeout(60_000)
    const path = uniquePath()
    const [a, b] = await upstreams('a', 'b')
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: a!.port })
    const session = new ZkSession({ connect: ctx.zk.connectString, sessionTimeoutMs: 2000, logger: recordingLogger() })
    const p = await proxyFor(path, { session })
    expect(await answers(p.port, 3)).to.equal('a')

    const node = ctx.zk.nodes[0]!
    await node.stop()
    try {
      await waitFor(() => session.state !== 'connected', 'the proxy to see the outage')
      // Disconnected longer than its session timeout, the proxy gives the session up and starts
      // another: where a careless client would empty the service. It routes on all along.
      let served = 0
      await waitFor(async () => {
        expect((await send(p.port)).body).to.equal('a')
        served++
        return session.state === 'connecting'
      }, 'the proxy to give its session up', 20_000)
      expect(served).to.be.above(1)
      expect((await send(p.port)).body).to.equal('a')
    } finally {
      node.start()
      await ctx.zk.waitServing()
    }

    await waitFor(() => ctx.admin.state === 'connected', 'admin session back', 20_000)
    await putNode(ctx.admin, `${path}/b`, { host: '127.0.0.1', port: b!.port })
    await waitFor(async () => (await answers(p.port, 4)) === 'a,b', 'a change made after the outage', 20_000)
  })

  it('recovers from a forced session expiry: new session, full re-read, watches re-armed', async function () {
    this.timeout(30_000)
    const path = uniquePath()
    const [a, b] = await upstreams('a', 'b')
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: a!.port })
    const session = new ZkSession({ connect: ctx.zk.connectString, sessionTimeoutMs: 2000, logger: recordingLogger() })
    const p = await proxyFor(path, { session })
    expect(await answers(p.port, 3)).to.equal('a')
    const before = session.info()

    await expireSession(ctx.zk.connectString, () => session.credentials(), () => session.info().sessions > before.sessions)
    await waitFor(() => session.state === 'connected', 'the new session to connect')
    expect(session.info().sessionId).to.not.equal(before.sessionId)
    // Traffic never stopped, and a change after the expiry is seen: the watches were re-armed.
    expect(await answers(p.port, 3)).to.equal('a')
    await putNode(ctx.admin, `${path}/b`, { host: '127.0.0.1', port: b!.port })
    await waitFor(async () => (await answers(p.port, 4)) === 'a,b', 'b after the expiry')
  })

  it('moves past a server that accepts the connection but never answers the handshake', async function () {
    this.timeout(30_000)
    // Three addresses in front of the real server. The first connection made to any of them is
    // accepted and never answered (a frozen server); every later one is passed through. The client
    // shuffles its list, so whichever it tries first is frozen, and only the handshake watchdog
    // gets it off.
    const sockets = new Set<net.Socket>()
    let frozen: net.Socket | null = null
    let frozenClosedByClient = false
    const zkPort = ctx.zk.nodes[0]!.clientPort
    const fronts = await Promise.all(
      [0, 1, 2].map(async () => {
        const s = net.createServer((sock) => {
          sockets.add(sock)
          sock.on('error', () => {})
          if (frozen === null) {
            frozen = sock
            // Read (and drop) what comes, so the client's close is seen.
            sock.resume()
            sock.once('end', () => (frozenClosedByClient = true))
            sock.once('close', () => (frozenClosedByClient = true))
            return
          }
          const real = net.connect(zkPort, '127.0.0.1')
          sockets.add(real)
          real.on('error', () => sock.destroy())
          sock.on('close', () => real.destroy())
          real.on('close', () => sock.destroy())
          sock.pipe(real).pipe(sock)
        })
        await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
        return s
      }),
    )
    closers.push(async () => {
      sockets.forEach((s) => s.destroy())
      await Promise.all(fronts.map((s) => new Promise((r) => s.close(r))))
    })
    const connect = fronts.map((s) => `127.0.0.1:${(s.address() as net.AddressInfo).port}`).join(',')
    const session = new ZkSession({ connect, sessionTimeoutMs: 2000, logger: recordingLogger() })
    closers.push(() => session.close())
    session.start()
    await waitFor(() => frozen !== null, 'the first connection')
    await waitFor(() => session.state === 'connected', 'a session through the real server', 20_000)
    // The frozen connection was given up by the client, not by the server or the test.
    expect(frozenClosedByClient).to.equal(true)
    expect(sockets.size).to.be.at.least(3)
    expect(await session.exists('/')).to.equal(true)
  })

  describe('a service ZooKeeper suddenly lists empty', () => {
    type Report = { services: Record<string, { keptLast: boolean; instances: unknown[] }> }

    /** Two services of one instance each, `kept` on /kept; both instances then deleted. */
    async function emptyBoth(zookeeper: object, kept: object, plain: object) {
      const [a, b] = await upstreams('a', 'b')
      const [pa, pb] = [uniquePath(), uniquePath()]
      await putNode(ctx.admin, `${pa}/a`, { host: '127.0.0.1', port: a!.port })
      await putNode(ctx.admin, `${pb}/b`, { host: '127.0.0.1', port: b!.port })
      const config = await makeConfig(
        ctx.zk.connectString,
        [
          { name: 'kept', path: pa, match: { pathPrefix: '/kept' }, ...kept },
          { name: 'plain', path: pb, ...plain },
        ],
        { zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000, ...zookeeper } },
      )
      const p = await startProxy(config)
      closers.push(() => p.close())
      expect([(await send(p.port, '/kept')).body, (await send(p.port, '/')).body]).to.deep.equal(['a', 'b'])
      await ctx.admin.remove(`${pa}/a`)
      await ctx.admin.remove(`${pb}/b`)
      return p
    }

    async function expectEmptied(p: { port: number; upstreams(): object }, name: string, path: string): Promise<void> {
      await waitFor(async () => (await send(p.port, path)).status === 503, `${name} to be emptied`)
      expect(JSON.parse((await send(p.port, path)).body)).to.include({ error: 'ZP_ERR_NO_ENDPOINT', service: name })
      expect((p.upstreams() as Report).services[name]).to.deep.include({ keptLast: false, instances: [] })
    }

    async function expectKept(p: { port: number; upstreams(): object }, name: string, path: string, body: string): Promise<void> {
      await waitFor(() => (p.upstreams() as Report).services[name]!.keptLast, `${name} to keep its last instances`)
      expect((await send(p.port, path)).body).to.equal(body)
    }

    it('empties it with zookeeper.keepLastOnEmpty: false, unless the service says keepLastOnEmpty: true', async () => {
      const p = await emptyBoth({ keepLastOnEmpty: false }, { keepLastOnEmpty: true }, {})
      await expectEmptied(p, 'plain', '/')
      await expectKept(p, 'kept', '/kept', 'a')
    })

    it('keeps its last instances by default, unless the service says keepLastOnEmpty: false', async () => {
      const p = await emptyBoth({}, {}, { keepLastOnEmpty: false })
      await expectEmptied(p, 'plain', '/')
      await expectKept(p, 'kept', '/kept', 'a')
    })
  })

  describe('one update that removes most of a service\'s instances (issue 21 item 11)', function () {
    this.timeout(60_000)
    type Service = { keptLast: boolean; stale: boolean; held: number; instances: unknown[] }
    const service = (p: { upstreams(): object }) => (p.upstreams() as { services: { example: Service } }).services.example

    /**
     * 160 instances: 10 on `survivor`, 150 spread over four other upstreams. Returns the path and
     * a function that deletes the 150 all at once (many deletions in flight, so the proxy may see
     * partial listings on the way, as with a mass expiry).
     */
    async function fleet() {
      const [survivor, ...others] = await upstreams('survivor', 'o0', 'o1', 'o2', 'o3')
      const path = uniquePath('mass')
      const at = (i: number) => `${path}/i${String(i).padStart(3, '0')}`
      const put = (i: number) => putNode(ctx.admin, at(i), { host: '127.0.0.1', port: i < 10 ? survivor!.port : others[i % 4]!.port })
      await putNode(ctx.admin, path)
      await Promise.all(Array.from({ length: 160 }, (_, i) => put(i)))
      const removeMost = () => Promise.all(Array.from({ length: 150 }, (_, i) => ctx.admin.remove(at(i + 10))))
      const restore = () => Promise.all(Array.from({ length: 150 }, (_, i) => put(i + 10)))
      return { path, removeMost, restore }
    }

    async function proxyWith(path: string, massRemoval: object, logger = recordingLogger()) {
      const config = await makeConfig(ctx.zk.connectString, [{ name: 'example', path, strategy: 'round-robin' }], {
        zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000, massRemoval },
      })
      const p = await startProxy(config, { logger })
      closers.push(() => p.close())
      await waitFor(() => p.services[0]!.balancer.hosts.length === 160, 'all 160 instances')
      return p
    }

    /** Waits until the proxy has read the listing of the 10 left (what it serves beyond them is held). */
    const listedTen = (p: { upstreams(): object; services: readonly { balancer: { hosts: readonly unknown[] } }[] }) =>
      waitFor(() => p.services[0]!.balancer.hosts.length - service(p).held === 10, 'the listing of the 10 left')

    it('keeps serving at least minKeepPercent of the instances instead of the few left, where 0 turns it off', async () => {
      const { path, removeMost } = await fleet()
      const logger = recordingLogger()
      const kept = await proxyWith(path, { holdMs: 120_000 }, logger)
      const off = await proxyWith(path, { minKeepPercent: 0 })
      await removeMost()
      expect(await ctx.admin.getChildren(path)).to.have.length(10)
      await listedTen(kept)
      await waitFor(() => off.services[0]!.balancer.hosts.length === 10, 'the proxy without protection to follow zookeeper')
      // Held: at least half (the default minKeepPercent) of the 160, marked stale.
      expect(kept.services[0]!.balancer.hosts.length).to.be.at.least(80)
      expect(service(kept)).to.include({ keptLast: true, stale: true })
      expect(service(kept).held).to.equal(kept.services[0]!.balancer.hosts.length - 10)
      expect(service(off)).to.include({ keptLast: false, held: 0 })
      // Without it the survivor takes everything; with it, its share stays near 10 in 80 or more.
      expect(await spread(off.port, 20)).to.deep.equal({ survivor: 20 })
      const shared = await spread(kept.port, 40)
      expect(Object.values(shared).reduce((a, b) => a + b, 0)).to.equal(40)
      expect(shared.survivor ?? 0).to.be.at.most(10)
      expect(logger.lines.filter((l) => l.level === 'warn' && l.msg.includes('(massRemoval)'))).to.have.length(1)
    })

    it('counts removals in several steps together: the instances had within holdMs are the measure', async () => {
      const { path } = await fleet()
      const p = await proxyWith(path, { holdMs: 120_000 })
      const hosts = () => p.services[0]!.balancer.hosts.length
      // 160 -> 120 -> 80 -> 40 -> 10 listed, each step seen by the proxy before the next.
      for (const [from, to] of [[120, 160], [80, 120], [40, 80], [10, 40]] as const) {
        await Promise.all(Array.from({ length: to - from }, (_, i) => ctx.admin.remove(`${path}/i${String(from + i).padStart(3, '0')}`)))
        await waitFor(() => hosts() - service(p).held === from, `the listing of ${from}`)
        // Never fewer than half of the 160 it had: 120 and 80 are honoured, 40 and 10 are not.
        expect(hosts(), `listing ${from}`).to.equal(Math.max(from, 80))
      }
      expect(service(p)).to.include({ keptLast: true, held: 70 })
    })

    it('honours the removal holdMs after the instances went missing', async () => {
      const { path, removeMost } = await fleet()
      const logger = recordingLogger()
      const p = await proxyWith(path, { minKeepPercent: 50, holdMs: 1_000 }, logger)
      await removeMost()
      await waitFor(() => p.services[0]!.balancer.hosts.length === 10, 'the removal to be honoured', 20_000)
      expect(service(p)).to.include({ keptLast: false, stale: false, held: 0 })
      expect(await spread(p.port, 10)).to.deep.equal({ survivor: 10 })
      // It was held on the way, and the end of the hold is logged.
      expect(logger.lines.some((l) => l.level === 'warn' && l.msg.includes('(massRemoval)'))).to.equal(true)
      expect(logger.lines.some((l) => l.msg.startsWith('mass removal over'))).to.equal(true)
    })

    it('ends the hold as soon as the instances are listed again', async () => {
      const { path, removeMost, restore } = await fleet()
      const p = await proxyWith(path, { holdMs: 120_000 })
      await removeMost()
      await listedTen(p)
      expect(service(p).keptLast).to.equal(true)
      await restore()
      await waitFor(() => service(p).held === 0 && p.services[0]!.balancer.hosts.length === 160, 'all 160 listed and none held')
      expect(service(p)).to.include({ keptLast: false, stale: false })
    })

    it('drops a held instance at its first refused connection: a blue/green deploy ends on the new instances only (found by the znode attack)', async () => {
      const [green] = await upstreams('green')
      const path = uniquePath('deploy')
      const dead = await Promise.all(Array.from({ length: 10 }, () => deadPort(closers)))
      await Promise.all(dead.map((port, i) => putNode(ctx.admin, `${path}/blue-${i}`, { host: '127.0.0.1', port })))
      const config = await makeConfig(ctx.zk.connectString, [{ name: 'example', path, strategy: 'round-robin' }], {
        zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000, massRemoval: { holdMs: 120_000 } },
      })
      const p = await startProxy(config)
      closers.push(() => p.close())
      await waitFor(() => p.services[0]!.balancer.hosts.length === 10, 'the 10 blue instances')
      // The new ones register, then the old ones (stopped) go: 9 of the 19 seen are listed.
      await Promise.all(Array.from({ length: 9 }, (_, i) => putNode(ctx.admin, `${path}/green-${i}`, { host: '127.0.0.1', port: green!.port })))
      await waitFor(() => p.services[0]!.balancer.hosts.length === 19, 'all 19')
      await Promise.all(dead.map((_, i) => ctx.admin.remove(`${path}/blue-${i}`)))
      // The deletions may be seen in several listings; the hold covers those seen after the
      // listing fell under half (all 10 when they come at once).
      await waitFor(() => p.services[0]!.balancer.hosts.length - service(p).held === 9, 'the listing of the 9 green ones')
      const blue = p.services[0]!.balancer.hosts.filter((h) => h.key.includes('/blue-'))
      expect(blue.length).to.equal(service(p).held).and.be.greaterThan(0)
      // Each held one is tried at most once: its refused connection takes it out, whatever the
      // ejection cap (maxEjectionPercent 50 would stop at 9 of 19).
      for (let i = 0; i < 20; i++) await send(p.port)
      expect(blue.map((h) => [h.key, h.failures, h.ejectedUntil > 0])).to.deep.equal(blue.map((h) => [h.key, 1, true]))
      expect(await spread(p.port, 20)).to.deep.equal({ green: 20 })
    })

    it('after an empty listing, keeps the last instances beside the first ones back instead of sending them everything', async () => {
      const { path, removeMost } = await fleet()
      const p = await proxyWith(path, { holdMs: 120_000 })
      await removeMost()
      await Promise.all(Array.from({ length: 10 }, (_, i) => ctx.admin.remove(`${path}/i${String(i).padStart(3, '0')}`)))
      await waitFor(() => service(p).keptLast && p.services[0]!.balancer.hosts.length >= 80, 'the last instances kept through the empty listing')
      const before = p.services[0]!.balancer.hosts.length
      // One instance comes back (a new znode, on the survivor): it joins the kept ones.
      await putNode(ctx.admin, `${path}/back`, { host: '127.0.0.1', port: (p.services[0]!.balancer.hosts.find((h) => h.key.endsWith('/i000')) ?? { port: 0 }).port })
      await waitFor(() => p.services[0]!.balancer.hosts.some((h) => h.key.endsWith('/back')), 'the instance back')
      expect(p.services[0]!.balancer.hosts.length).to.equal(before + 1)
      expect(service(p)).to.include({ keptLast: true, held: before })
    })
  })

  it('is not ready until the first full read of every service', async () => {
    const session = new ZkSession({ connect: '127.0.0.1:1', sessionTimeoutMs: 2000, logger: recordingLogger() })
    const config = await makeConfig('127.0.0.1:1', [{ name: 'example', path: uniquePath() }])
    const { createProxy } = await import('../../lib/proxy.js')
    const p = await createProxy(config, { session, logger: recordingLogger() })
    await p.start()
    closers.push(() => p.close())
    const res = await fetch(`http://127.0.0.1:${p.adminAddress()!.port}/readyz`)
    expect(res.status).to.equal(503)
    expect(await res.json()).to.deep.equal({ ready: false, waiting: ['example'] })
  })
})
