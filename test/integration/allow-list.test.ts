// upstreams.allow (issue 14): an instance outside the allow-list is skipped with a warning and
// listed under `skipped` in /upstreams; a poisoned znode cannot point the proxy elsewhere.

import { expect } from 'chai'
import { validateConfig } from '../../lib/config.js'
import { ConfigError } from '../../lib/errors.js'
import { makeConfig, putNode, recordingLogger, send, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'

describe('upstreams.allow (real ZooKeeper)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  it('routes only to instances inside the allow-list and lists the rest as skipped, with a warning', async () => {
    const up = await startUpstream('inside')
    closers.push(() => up.close())
    const path = uniquePath('allow')
    await putNode(ctx.admin, `${path}/inside`, { host: '127.0.0.1', port: up.port })
    await putNode(ctx.admin, `${path}/outside`, { host: '10.9.9.9', port: 80 })
    await putNode(ctx.admin, `${path}/by-name`, { host: 'localhost', port: up.port })
    await putNode(ctx.admin, `${path}/v6`, { host: '::1', port: up.port })
    const logger = recordingLogger()
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path }], { upstreams: { allow: ['127.0.0.0/8'] } }), { logger })
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    expect(p.services[0]!.balancer.hosts.map((h) => h.host)).to.deep.equal(['127.0.0.1'])
    for (let i = 0; i < 4; i++) expect((await send(p.port)).body).to.equal('inside')
    const report = (await (await fetch(`http://127.0.0.1:${p.adminPort}/upstreams`)).json()) as { services: Record<string, { skipped: { name: string; reason: string }[] }> }
    expect([...report.services.example!.skipped].sort((a, b) => a.name.localeCompare(b.name))).to.deep.equal([
      { name: 'by-name', reason: 'host localhost is not an IP address, and upstreams.allow is set' },
      { name: 'outside', reason: 'address 10.9.9.9 is outside upstreams.allow' },
      { name: 'v6', reason: 'address ::1 is outside upstreams.allow' },
    ])
    const warned = logger.lines.filter((l) => l.level === 'warn' && l.msg === 'skipping instance znode').map((l) => (l.obj as { znode: string }).znode)
    expect(warned.sort()).to.deep.equal([`${path}/by-name`, `${path}/outside`, `${path}/v6`])
  })

  it('refuses a config whose allow-list has something that is not a CIDR, naming the field', async () => {
    for (const bad of ['10.0.0.0/33', 'example.test/8', '10.0.0.0/8/1', 'fd00::/129']) {
      const err = await validateConfig({ upstreams: { allow: ['127.0.0.1/32', bad] }, services: [{ name: 'a', path: '/a' }] }, '.').catch((e: unknown) => e)
      expect(err).to.be.instanceOf(ConfigError)
      expect((err as ConfigError).problems).to.have.length(1)
      expect((err as ConfigError).problems[0]).to.match(/^upstreams\.allow\[1\]: must be a CIDR/)
    }
  })
})
