// Run-time overrides on the admin listener (issue 13): PUT /services/{name}/instances/{host:port}
// with a weight and/or a state, DELETE to clear; kept until cleared or until the instance leaves
// ZooKeeper; shown in /upstreams and counted in zoo_proxy_instances{state="override"}.

import { expect } from 'chai'
import { makeConfig, putNode, send, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'
import type { Upstream } from '../support/helpers.js'

describe('run-time overrides (real ZooKeeper, real upstreams)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  async function setUp() {
    const ups: Upstream[] = []
    for (const name of ['a', 'b', 'c']) {
      const u = await startUpstream(name)
      closers.push(() => u.close())
      ups.push(u)
    }
    const path = uniquePath('override')
    for (const u of ups) await putNode(ctx.admin, `${path}/${u.name}`, { host: '127.0.0.1', port: u.port })
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path, strategy: 'round-robin' }]))
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 3, 'three instances')
    const admin = (method: string, at: string, body?: string) =>
      fetch(`http://127.0.0.1:${p.adminPort}${at}`, { method, ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } }) })
    const split = async (n = 9) => {
      const seen: Record<string, number> = {}
      for (let i = 0; i < n; i++) {
        const b = (await send(p.port)).body
        seen[b] = (seen[b] ?? 0) + 1
      }
      return seen
    }
    const instance = (u: Upstream) => `/services/example/instances/127.0.0.1:${u.port}`
    return { ups, path, p, admin, split, instance }
  }

  it('takes an instance out with weight 0 or state draining, shows it, and puts it back on DELETE', async () => {
    const { ups, admin, split, instance } = await setUp()
    const [a, b] = ups as [Upstream, Upstream, Upstream]
    const put = await admin('PUT', instance(b), '{"weight": 0}')
    expect(put.status).to.equal(200)
    expect(await put.json()).to.deep.equal({ service: 'example', instance: `127.0.0.1:${b.port}`, override: { weight: 0 } })
    expect(await admin('PUT', instance(a), '{"state": "draining"}').then((r) => r.status)).to.equal(200)
    expect(await split()).to.deep.equal({ c: 9 })
    const report = (await (await admin('GET', '/upstreams')).json()) as { services: { example: { instances: { port: number; state: string; weight: number; override: object | null }[] } } }
    const byPort = new Map(report.services.example.instances.map((i) => [i.port, i]))
    expect(byPort.get(b.port)).to.include({ weight: 0 })
    expect(byPort.get(b.port)!.override).to.deep.equal({ weight: 0 })
    expect(byPort.get(a.port)).to.include({ state: 'draining' })
    const metrics = await (await admin('GET', '/metrics')).text()
    expect(metrics).to.include('zoo_proxy_instances{service="example",state="override"} 2')
    expect(metrics).to.include('zoo_proxy_instances{service="example",state="draining"} 1')
    expect(await admin('DELETE', instance(b)).then((r) => r.status)).to.equal(200)
    expect(await admin('DELETE', instance(a)).then((r) => r.status)).to.equal(200)
    expect(Object.keys(await split()).sort()).to.deep.equal(['a', 'b', 'c'])
  })

  it('keeps an override across ZooKeeper changes of its instance, and drops it when the instance leaves', async () => {
    const { ups, path, p, admin, split, instance } = await setUp()
    const b = ups[1]!
    expect((await admin('PUT', instance(b), '{"weight": 0}')).status).to.equal(200)
    // ZooKeeper says weight 5: the override still wins.
    await putNode(ctx.admin, `${path}/b`, { host: '127.0.0.1', port: b.port, weight: 5 })
    await waitFor(() => p.services[0]!.balancer.hosts.find((h) => h.port === b.port)?.endpoint.weight === 5, 'the new znode data')
    expect(await split()).not.to.have.property('b')
    // The instance leaves, and comes back: no override any more.
    await ctx.admin.remove(`${path}/b`)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'b gone')
    await putNode(ctx.admin, `${path}/b`, { host: '127.0.0.1', port: b.port })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 3, 'b back')
    expect(p.services[0]!.balancer.hosts.find((h) => h.port === b.port)!.override).to.equal(null)
    expect(await split()).to.have.property('b')
  })

  it('answers 404 for an unknown service or instance and 400 for a bad body', async () => {
    const { ups, admin, instance } = await setUp()
    expect((await admin('PUT', '/services/nope/instances/127.0.0.1:1', '{"weight": 1}')).status).to.equal(404)
    expect((await admin('PUT', '/services/example/instances/127.0.0.1:1', '{"weight": 1}')).status).to.equal(404)
    expect((await admin('DELETE', '/services/example/instances/10.0.0.1:80')).status).to.equal(404)
    for (const bad of ['not json', '[]', '{}', '{"weight": -1}', '{"weight": "2"}', '{"state": "down"}', '{"weight": 1, "colour": "red"}']) {
      const r = await admin('PUT', instance(ups[0]!), bad)
      expect(r.status, bad).to.equal(400)
      expect(((await r.json()) as { error: string }).error).to.equal('bad override')
    }
  })

  it('refuses a weight outside 0-256 with a 400 naming the field, and takes both ends of the range (issue 21)', async () => {
    const { ups, p, admin, instance } = await setUp()
    // 1e400 is Infinity once parsed; 1e308 once made a consistent-hash ring of 1.6e310 points.
    for (const weight of ['1e308', '1e400', '256.5', '257', '20000', '-1', '-1e-300', '-0.5']) {
      const r = await admin('PUT', instance(ups[0]!), `{"weight": ${weight}}`)
      expect(r.status, weight).to.equal(400)
      expect(await r.json(), weight).to.deep.equal({ error: 'bad override', field: 'weight', message: 'weight must be a number 0-256' })
    }
    expect(p.services[0]!.balancer.hosts.every((h) => h.override === null && h.weight === 1)).to.equal(true)
    for (const weight of [0, 5e-324, 0.5, 255.99, 256]) {
      const r = await admin('PUT', instance(ups[0]!), JSON.stringify({ weight }))
      expect(r.status, String(weight)).to.equal(200)
      expect(p.services[0]!.balancer.hosts.find((h) => h.port === ups[0]!.port)!.weight).to.equal(weight)
    }
  })
})
