import { expect } from 'chai'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { seededRandom } from '../support/random.js'
import type { ProxyDeps } from '../../lib/proxy.js'
import { makeConfig, putNode, send, startProxy, startUpstream, uniquePath, useZooKeeper, waitFor, useClosers } from '../support/helpers.js'
import type { Upstream } from '../support/helpers.js'

/** Sends `n` GETs, `concurrency` at a time; returns the share of each answer. */
async function load(port: number, n: number, concurrency: number, headers: (i: number) => Record<string, string> = () => ({})): Promise<Record<string, number>> {
  const counts: Record<string, number> = {}
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++
        const r = await send(port, '/', { headers: headers(i) })
        const k = r.status === 200 ? r.body : `status ${r.status}`
        counts[k] = (counts[k] ?? 0) + 1
      }
    }),
  )
  for (const k of Object.keys(counts)) counts[k] = counts[k]! / n
  return counts
}

describe('strategies driven by ZooKeeper data (real ZooKeeper, real upstreams)', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()
  const closers = useClosers()

  async function upstream(name: string, delayMs = 0): Promise<Upstream> {
    const u = await startUpstream(name, (_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.end(name)
      }, delayMs)
    })
    closers.push(() => u.close())
    return u
  }

  async function proxy(path: string, service: object, deps: ProxyDeps = {}) {
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path, ...service }]), deps)
    closers.push(() => p.close())
    return p
  }

  it('weighted: weights 3:1 in znode data give exactly 3 of every 4 requests to the first, and a live setData to 1:1 halves them', async () => {
    const svc = uniquePath()
    const [a, b] = [await upstream('a'), await upstream('b')]
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port, weight: 3 })
    await putNode(ctx.admin, `${svc}/b`, { host: '127.0.0.1', port: b.port, weight: 1 })
    const p = await proxy(svc, { strategy: 'weighted' })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    // Smooth weighted round-robin is exact whatever the concurrency: every pick is the next in turn.
    expect(await load(p.port, 400, 16)).to.deep.equal({ a: 0.75, b: 0.25 })

    await ctx.admin.setData(`${svc}/a`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: a.port, weight: 1 })))
    await waitFor(() => p.services[0]!.balancer.hosts.every((h) => h.weight === 1), 'the new weight')
    expect(await load(p.port, 400, 16)).to.deep.equal({ a: 0.5, b: 0.5 })
  })

  it('random: weights 3:1 in znode data give 75% / 25% (seeded), and a live setData to 1:1 moves the split', async () => {
    const svc = uniquePath()
    const [a, b] = [await upstream('a'), await upstream('b')]
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port, weight: 3 })
    await putNode(ctx.admin, `${svc}/b`, { host: '127.0.0.1', port: b.port, weight: 1 })
    const p = await proxy(svc, { strategy: 'random' }, { random: seededRandom(42) })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const before = await load(p.port, 2000, 16)
    expect(before.a).to.be.closeTo(0.75, 0.03)
    expect(before.b).to.be.closeTo(0.25, 0.03)

    await ctx.admin.setData(`${svc}/a`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: a.port, weight: 1 })))
    await waitFor(() => p.services[0]!.balancer.hosts.every((h) => h.weight === 1), 'the new weight')
    const after = await load(p.port, 2000, 16)
    expect(after.a).to.be.closeTo(0.5, 0.03)
  })

  it('weighted: weight 0 and draining in znode data take an instance out of new traffic', async () => {
    const svc = uniquePath()
    const [a, b] = [await upstream('a'), await upstream('b')]
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port, weight: 0 })
    await putNode(ctx.admin, `${svc}/b`, { host: '127.0.0.1', port: b.port })
    const p = await proxy(svc, { strategy: 'weighted' })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    expect(await load(p.port, 50, 4)).to.deep.equal({ b: 1 })
    await ctx.admin.setData(`${svc}/a`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: a.port, weight: 1 })))
    await ctx.admin.setData(`${svc}/b`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: b.port, state: 'draining' })))
    await waitFor(async () => (await load(p.port, 10, 1)).a === 1, 'only a')
  })

  it('least-loaded sends nothing to an instance while it holds a request and the others hold none, nor while it is slower', async () => {
    const svc = uniquePath()
    const fast = [await upstream('fast1'), await upstream('fast2')]
    // Holds every request until the test lets it go.
    let arrived: () => void = () => {}
    const got = new Promise<void>((r) => (arrived = r))
    let release: () => void = () => {}
    const released = new Promise<void>((r) => (release = r))
    const slow = await startUpstream('slow', (_req, res) => {
      arrived()
      void released.then(() => res.end('slow'))
    })
    closers.push(() => slow.close())
    for (const u of [...fast, slow]) await putNode(ctx.admin, `${svc}/${u.name}`, { host: '127.0.0.1', port: u.port })
    const p = await proxy(svc, { strategy: 'least-loaded' })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 3, 'three instances')
    // One at a time until a request lands on slow (with no latency figure yet, it wins ties soon).
    let held: Promise<unknown> | null = null
    for (let i = 0; held === null; i++) {
      expect(i, 'requests before one reached slow').to.be.below(50)
      const r = send(p.port)
      if ((await Promise.race([r.then(() => 'answered'), got.then(() => 'held')])) === 'held') held = r
    }
    const answers = async (n: number) => {
      const seen: Record<string, number> = {}
      for (let i = 0; i < n; i++) {
        const body = (await send(p.port)).body
        seen[body] = (seen[body] ?? 0) + 1
      }
      return Object.keys(seen).sort()
    }
    // One in flight at slow, none at the others: whichever two it compares, slow loses.
    expect(await answers(30)).to.deep.equal(['fast1', 'fast2'])
    expect(slow.hits).to.equal(1)
    release()
    expect((await (held as Promise<{ body: string }>)).body).to.equal('slow')
    // Idle again, but its latency is far above theirs: equal load, so the faster one wins.
    expect(await answers(30)).to.deep.equal(['fast1', 'fast2'])
    expect(slow.hits).to.equal(1)
  })

  it('consistent-hash keeps a user on one instance', async () => {
    const svc = uniquePath()
    const ups = [await upstream('a'), await upstream('b'), await upstream('c')]
    for (const u of ups) await putNode(ctx.admin, `${svc}/${u.name}`, { host: '127.0.0.1', port: u.port })
    const p = await proxy(svc, { strategy: { name: 'consistent-hash', key: 'header:x-user' } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 3, 'three instances')
    const homes = new Set<string>()
    for (let u = 0; u < 30; u++) {
      const answers = new Set<string>()
      for (let i = 0; i < 4; i++) answers.add((await send(p.port, '/', { headers: { 'x-user': `user-${u}` } })).body)
      expect(answers.size).to.equal(1)
      homes.add([...answers][0]!)
    }
    expect(homes.size).to.equal(3)
  })

  it("runs a user's strategy module, and falls back to round-robin when its pick throws", async () => {
    const svc = uniquePath()
    const ups = [await upstream('a'), await upstream('b')]
    for (const u of ups) await putNode(ctx.admin, `${svc}/${u.name}`, { host: '127.0.0.1', port: u.port })
    const file = path.join(ctx.zk.dir, 'last.js')
    writeFileSync(file, `export function createStrategy(opts) {
  let n = 0
  return { pick(candidates) { if (opts.failAfter && ++n > opts.failAfter) throw new Error('tired'); return candidates[candidates.length - 1] } }
}`)
    const p = await proxy(svc, { strategy: { module: file, failAfter: 5 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const first = await load(p.port, 5, 1)
    expect(first).to.deep.equal({ b: 1 })
    const rest = await load(p.port, 10, 1)
    expect(rest.a).to.equal(0.5)
  })
})
