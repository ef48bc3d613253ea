// The metrics issue 13 adds, with exact values after a known sequence of requests.

import { expect } from 'chai'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { deadPort, makeConfig, putNode, send, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'

describe('metrics: ejections and discovery age (real ZooKeeper)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  it('counts each ejection in zoo_proxy_ejections_total and says data is 0 s old while synced', async () => {
    const up = await startUpstream('a')
    closers.push(() => up.close())
    const path = uniquePath('metrics')
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: up.port })
    await putNode(ctx.admin, `${path}/dead`, { host: '127.0.0.1', port: await deadPort(closers) })
    const config = await makeConfig(ctx.zk.connectString, [
      { name: 'example', path, strategy: 'round-robin', outlier: { consecutiveFailures: 2, baseEjectionMs: 60_000 } },
    ])
    const p = await startProxy(config)
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    // Round-robin reaches the dead one every other request until its second failure ejects it;
    // every request still succeeds (a refused connection goes to the other instance).
    for (let i = 0; i < 6; i++) expect((await send(p.port)).status).to.equal(200)
    const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text()
    expect(text).to.include('zoo_proxy_ejections_total{service="example"} 1')
    expect(text).to.include('zoo_proxy_instances{service="example",state="ejected"} 1')
    expect(text).to.include('zoo_proxy_discovery_age_seconds{service="example"} 0')
  })

  it('serves every metric the README lists, each with its exact value after a known sequence', async () => {
    const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8')
    const row = readme.split('\n').find((l) => l.startsWith('| `GET /metrics` |'))!
    const listed = [...new Set([...row.matchAll(/`(zoo_proxy_[a-z_]*[a-z])[{`]/g)].map((m) => m[1]!))].sort()
    expect(listed).to.have.length.above(12)
    const up = await startUpstream('a')
    closers.push(() => up.close())
    const path = uniquePath('every-metric')
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: up.port })
    await putNode(ctx.admin, `${path}/dead`, { host: '127.0.0.1', port: await deadPort(closers) })
    const p = await startProxy(
      await makeConfig(ctx.zk.connectString, [{ name: 'example', path, strategy: 'round-robin', outlier: { consecutiveFailures: 0 }, retry: { budget: { percent: 0, minRetriesPerSecond: 1, windowMs: 60_000 } } }]),
    )
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    // Round-robin over a live and a dead instance: every other request meets the refused one.
    // The budget allows one retry a second over the window: 60 in all, far more than needed here.
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) statuses.push((await send(p.port)).status)
    expect(statuses).to.deep.equal([200, 200, 200, 200])
    const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text()
    const value = (series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `))
      expect(line, `${series} in /metrics`).to.be.a('string')
      return Number(line!.slice(series.length + 1))
    }
    const exact: Record<string, number> = {
      'zoo_proxy_requests_total{service="example",code="200"}': 4,
      'zoo_proxy_request_duration_seconds_count{service="example"}': 4,
      'zoo_proxy_upstream_attempts_total{service="example",outcome="ok"}': 4,
      'zoo_proxy_upstream_attempts_total{service="example",outcome="connect"}': 2,
      'zoo_proxy_retries_total{service="example"}': 2,
      'zoo_proxy_retry_budget_exhausted_total{service="example"}': 0,
      'zoo_proxy_instances{service="example",state="up"}': 2,
      'zoo_proxy_instances{service="example",state="override"}': 0,
      'zoo_proxy_instances{service="example",state="drained"}': 0,
      'zoo_proxy_in_flight{service="example"}': 0,
      'zoo_proxy_zookeeper_connected': 1,
      'zoo_proxy_zookeeper_sessions': 1,
      'zoo_proxy_zookeeper_data_stale{service="example"}': 0,
      'zoo_proxy_ejections_total{service="example"}': 0,
      'zoo_proxy_config_reloads_total{result="ok"}': 0,
      'zoo_proxy_config_reloads_total{result="refused"}': 0,
      'zoo_proxy_discovery_age_seconds{service="example"}': 0,
    }
    for (const [series, n] of Object.entries(exact)) expect(value(series), series).to.equal(n)
    // Every listed name is served, and every one is checked above.
    for (const name of listed) expect(Object.keys(exact).some((k) => k.startsWith(name)), `${name} checked`).to.equal(true)
  })
})
