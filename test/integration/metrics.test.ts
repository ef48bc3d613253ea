// The metrics issue 13 adds, with exact values after a known sequence of requests.

import { expect } from 'chai'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { makeConfig, putNode, send, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'

/** A port nothing listens on (bound, then closed: connections to it are refused). */
async function refusedPort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const { port } = s.address() as AddressInfo
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

describe('metrics: ejections and discovery age (real ZooKeeper)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  it('counts each ejection in zoo_proxy_ejections_total and says data is 0 s old while synced', async () => {
    const up = await startUpstream('a')
    closers.push(() => up.close())
    const path = uniquePath('metrics')
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: up.port })
    await putNode(ctx.admin, `${path}/dead`, { host: '127.0.0.1', port: await refusedPort() })
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
})
