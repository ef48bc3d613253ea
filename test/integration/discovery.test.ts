import { expect } from 'chai'
import net from 'node:net'
import {
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
    const p = await proxyFor(path)
    expect(await answers(p.port, 3)).to.equal('a')

    const node = ctx.zk.nodes[0]!
    await node.stop()
    await waitFor(() => p.upstreams() && (p.upstreams() as { zookeeper: { state: string } }).zookeeper.state !== 'connected', 'proxy to see the outage')
    // Well past the point where a careless client would have emptied the service.
    const until = Date.now() + 1500
    while (Date.now() < until) expect((await send(p.port)).body).to.equal('a')
    node.start()
    await ctx.zk.waitServing()

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
    // Three "frozen" servers (the kernel accepts, nobody answers) and the real one; the client
    // shuffles them, so it usually starts on a frozen one and would wait there forever.
    const held: net.Socket[] = []
    const frozen = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<net.Server>((resolve) => {
            const s = net.createServer((sock) => held.push(sock))
            s.listen(0, '127.0.0.1', () => resolve(s))
          }),
      ),
    )
    closers.push(async () => {
      held.forEach((s) => s.destroy())
      await Promise.all(frozen.map((s) => new Promise((r) => s.close(r))))
    })
    const connect = [...frozen.map((s) => `127.0.0.1:${(s.address() as net.AddressInfo).port}`), ctx.zk.connectString].join(',')
    const session = new ZkSession({ connect, sessionTimeoutMs: 2000, logger: recordingLogger() })
    closers.push(async () => session.close())
    session.start()
    await waitFor(() => session.state === 'connected', 'a session through the real server', 20_000)
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
