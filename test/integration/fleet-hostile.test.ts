// Attacks on a proxy's side of the fleet (issue 25): whoever holds the fleet's credential writes
// `active` and `tables/*`, so each may hold any bytes. Each hostile write must be refused with a
// reason in the proxy's status node while the applied table keeps serving, and a good table
// pushed after all of them must still be applied (the watch on `active` was set again each time).

import { expect } from 'chai'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import zookeeper from 'node-zookeeper-client'
import { validateConfig } from '../../lib/config.js'
import { ZkSession } from '../../lib/discovery/zk-session.js'
import { runFleet } from '../../lib/fleet-cli.js'
import { fleetPaths, parseProxyStatus } from '../../lib/fleet/layout.js'
import { silentLogger } from '../../lib/log.js'
import { createProxy } from '../../lib/proxy.js'
import { expireSession, putNode, send, startUpstream, tempDir, useClosers, useZooKeeper, waitThroughErrors } from '../support/helpers.js'

const AUTH = 'fleet-ops:s3cret'
const ROOT = '/zoo-proxy/fleets/hostile'
const P = fleetPaths(ROOT)

describe('fleet: hostile active and table nodes (attack, issue 25)', function () {
  this.timeout(120_000)
  const ctx = useZooKeeper()
  const closers = useClosers()

  it('refuses each with a reason, keeps serving, and still follows a good table after them', async () => {
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    closers.push(() => a.close(), () => b.close())
    await putNode(ctx.admin, '/services/a/i', { host: '127.0.0.1', port: a.port })
    await putNode(ctx.admin, '/services/b/i', { host: '127.0.0.1', port: b.port })
    const dir = tempDir(closers)
    const io = { out: () => {}, err: () => {} }
    const push = async (services: object[]): Promise<number> => {
      const file = path.join(dir, `t-${Math.random().toString(36).slice(2)}.json`)
      writeFileSync(file, JSON.stringify({ services }))
      return runFleet(['push', file], { zookeeper: ctx.zk.connectString, fleet: ROOT, auth: AUTH }, io)
    }
    expect(await push([{ name: 'web', path: '/services/a' }])).to.equal(0)
    const writer = new ZkSession({ connect: ctx.zk.connectString, sessionTimeoutMs: 4000, logger: silentLogger, auth: [{ scheme: 'digest', credentials: AUTH }] })
    writer.start()
    closers.push(() => writer.close())
    const config = await validateConfig(
      { listen: '127.0.0.1:0', zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000, auth: [{ credentials: AUTH }] }, log: { level: 'silent' }, fleet: { path: ROOT, id: 'h1' } },
      process.cwd(),
    )
    const proxy = await createProxy(config, { logger: silentLogger })
    closers.push(() => proxy.close())
    await proxy.start()
    const port = proxy.address().port
    const good = (await waitThroughErrors(() => proxy.fleet!.serving(), 'the first table'))!.table
    expect((await send(port)).body).to.equal('a')

    const status = async () => parseProxyStatus((await ctx.admin.getData(P.proxy('h1')))!)
    let n = 9_000_000_000
    /** A table node written as a hostile writer would: any name in the t-N shape, any bytes. */
    const table = async (data: Buffer | string): Promise<string> => {
      const name = `t-${String(n++)}`
      await writer.create(P.table(name), Buffer.from(data), 'persistent')
      return name
    }
    const setActive = (data: Buffer | string) => writer.setData(P.active, Buffer.from(data))
    const deep = (depth: number) => '['.repeat(depth) + ']'.repeat(depth)

    const cases: { what: string; active: () => Promise<Buffer | string>; table: string; says: RegExp }[] = [
      { what: 'active not JSON', active: async () => Buffer.from([0xff, 0x00, 0x7b]), table: '(active)', says: /not JSON/ },
      { what: 'active a list', active: async () => '[]', table: '(active)', says: /JSON object/ },
      { what: 'active names a path', active: async () => JSON.stringify({ table: '../proxies/h1' }), table: '(active)', says: /active\.table/ },
      { what: 'active nested deep', active: async () => `{"table":${deep(200_000)}}`, table: '(active)', says: /active\.table/ },
      { what: 'canary percent 1e309', active: async () => `{"table":"${good}","canary":{"table":"${good}","percent":1e309}}`, table: '(active)', says: /percent/ },
      { what: 'canary percent negative', active: async () => JSON.stringify({ table: good, canary: { table: good, percent: -1 } }), table: '(active)', says: /percent/ },
      { what: 'canary percent a string', active: async () => JSON.stringify({ table: good, canary: { table: good, percent: 'NaN' } }), table: '(active)', says: /percent/ },
      { what: 'canary proxies huge', active: async () => JSON.stringify({ table: good, canary: { table: good, proxies: Array.from({ length: 10_001 }, (_, i) => `p${i}`) } }), table: '(active)', says: /proxies/ },
      { what: 'canary proxies with a slash', active: async () => JSON.stringify({ table: good, canary: { table: good, proxies: ['a/b'] } }), table: '(active)', says: /proxies/ },
      { what: 'canary a string', active: async () => JSON.stringify({ table: good, canary: 'x' }), table: '(active)', says: /canary/ },
      { what: 'active names a missing table', active: async () => JSON.stringify({ table: 't-0000099999' }), table: 't-0000099999', says: /does not exist/ },
      { what: 'table not JSON', active: async () => JSON.stringify({ table: await table('{{{') }), table: '', says: /not JSON/ },
      { what: 'table services a string', active: async () => JSON.stringify({ table: await table('{"services":"x"}') }), table: '', says: /services/ },
      { what: 'table services of numbers', active: async () => JSON.stringify({ table: await table('{"services":[1,2]}') }), table: '', says: /services\[0\]/ },
      { what: 'table nested deep', active: async () => JSON.stringify({ table: await table(`{"services":${deep(200_000)}}`) }), table: '', says: /services/ },
      {
        what: 'table with __proto__',
        active: async () => JSON.stringify({ table: await table('{"services":[{"name":"web","path":"/services/nothing","__proto__":{"allowEmpty":true}}]}') }),
        table: '',
        says: /services\[0\]/,
      },
      {
        what: 'table parent a path, author huge',
        active: async () => JSON.stringify({ table: await table(JSON.stringify({ services: [{ name: 'web', path: '/services/b' }], parent: '../x', author: 'x'.repeat(10_000) })) }),
        table: '',
        says: /parent/,
      },
      { what: 'table points at itself as active', active: async () => JSON.stringify({ table: await table(JSON.stringify({ services: [], parent: 't-0000000000' })) }), table: '', says: /./ },
    ]
    for (const c of cases) {
      const data = await c.active()
      const meant = c.table === '' ? (JSON.parse(data.toString()) as { table: string }).table : c.table
      await setActive(data)
      const st = await waitThroughErrors(async () => {
        const s = await status()
        return s.rejected?.table === meant && c.says.test(s.rejected.problems.join('\n')) ? s : null
      }, `${c.what}: a rejection naming ${c.says}`)
      expect(st.applied, c.what).to.equal(good)
      expect((await send(port)).body, c.what).to.equal('a')
    }
    // After every refusal the watch is still set: a good table is applied.
    expect(await push([{ name: 'web', path: '/services/b' }])).to.equal(0)
    await waitThroughErrors(async () => ((await send(port)).body === 'b' ? true : null), 'the good table after the hostile ones')
    expect((await status()).rejected).to.equal(null)
  })

  it('follows a table pushed while its session expires, and writes its status node again', async () => {
    const a = await startUpstream('ea')
    const b = await startUpstream('eb')
    closers.push(() => a.close(), () => b.close())
    await putNode(ctx.admin, '/services/ea/i', { host: '127.0.0.1', port: a.port })
    await putNode(ctx.admin, '/services/eb/i', { host: '127.0.0.1', port: b.port })
    const root = '/zoo-proxy/fleets/expiry'
    const dir = tempDir(closers)
    const io = { out: () => {}, err: () => {} }
    const push = async (service: string): Promise<number> => {
      const file = path.join(dir, `t-${Math.random().toString(36).slice(2)}.json`)
      writeFileSync(file, JSON.stringify({ services: [{ name: 'web', path: `/services/${service}` }] }))
      return runFleet(['push', file], { zookeeper: ctx.zk.connectString, fleet: root, auth: AUTH }, io)
    }
    expect(await push('ea')).to.equal(0)
    const session = new ZkSession({ connect: ctx.zk.connectString, sessionTimeoutMs: 4000, logger: silentLogger, auth: [{ scheme: 'digest', credentials: AUTH }] })
    const config = await validateConfig(
      { listen: '127.0.0.1:0', zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000, auth: [{ credentials: AUTH }] }, log: { level: 'silent' }, fleet: { path: root, id: 'e1' } },
      process.cwd(),
    )
    const proxy = await createProxy(config, { logger: silentLogger, session })
    closers.push(() => proxy.close())
    await proxy.start()
    const port = proxy.address().port
    await waitThroughErrors(async () => ((await send(port)).body === 'ea' ? true : null), 'the first table')
    const before = session.info().sessions
    // The push races the expiry: the old session's watch may or may not see it.
    const pushed = push('eb')
    await expireSession(ctx.zk.connectString, () => session.credentials(), () => session.info().sessions > before)
    expect(await pushed).to.equal(0)
    await waitThroughErrors(async () => ((await send(port)).body === 'eb' ? true : null), 'the table pushed across the expiry', 20_000)
    const table = proxy.fleet!.serving()!.table
    await waitThroughErrors(async () => {
      const node = await ctx.admin.getData(`${root}/proxies/e1`)
      return node !== null && parseProxyStatus(node).applied === table ? true : null
    }, 'the status node of the new session', 20_000)
    // And the watch of the new session is set: one more push is followed.
    expect(await push('ea')).to.equal(0)
    await waitThroughErrors(async () => ((await send(port)).body === 'ea' ? true : null), 'a push after the expiry', 20_000)
  })

  it('fleet rollback never points active at a parent that does not exist; fleet diff of deep tables ends', async () => {
    const root = '/zoo-proxy/fleets/cli'
    const paths = fleetPaths(root)
    const writer = new ZkSession({ connect: ctx.zk.connectString, sessionTimeoutMs: 4000, logger: silentLogger, auth: [{ scheme: 'digest', credentials: AUTH }] })
    writer.start()
    closers.push(() => writer.close())
    const dir = tempDir(closers)
    const out: string[] = []
    const err: string[] = []
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }
    const fleet = (args: string[], extra: Record<string, string> = {}) => runFleet(args, { zookeeper: ctx.zk.connectString, fleet: root, auth: AUTH, ...extra }, io)
    const file = path.join(dir, 't.json')
    writeFileSync(file, JSON.stringify({ services: [{ name: 'web', path: '/services/a', allowEmpty: true }] }))
    expect(await fleet(['push', file])).to.equal(0)
    // Tables naming a parent that was never written (a hostile or hand-made table), and itself.
    for (const parent of ['t-0000077777', 't-8000000000']) {
      const name = parent === 't-8000000000' ? parent : 't-8000000001'
      await writer.create(paths.table(name), Buffer.from(JSON.stringify({ services: [], parent })), 'persistent')
      await writer.setData(paths.active, Buffer.from(JSON.stringify({ table: name })))
      const code = await fleet(['rollback'])
      const now = JSON.parse((await ctx.admin.getData(paths.active))!.toString()) as { table: string }
      if (parent === name) expect(now.table, 'a table its own parent').to.equal(name)
      else {
        expect(code, err.join('\n')).to.equal(1)
        expect(now.table).to.equal(name)
        expect(await ctx.admin.getData(paths.table(now.table))).to.not.equal(null)
      }
    }
    // Two tables alike but for one leaf under a deep nest over a large value: the diff ends and names it.
    const nest = (leaf: string) => {
      let v: unknown = 'x'.repeat(300_000) + leaf
      for (let i = 0; i < 3000; i++) v = { k: v }
      return [{ name: 'web', path: '/services/a', deep: v }]
    }
    await writer.create(paths.table('t-8000000010'), Buffer.from(JSON.stringify({ services: nest('a') })), 'persistent')
    await writer.create(paths.table('t-8000000011'), Buffer.from(JSON.stringify({ services: nest('b') })), 'persistent')
    out.length = 0
    expect(await fleet(['diff', 't-8000000010', 't-8000000011'])).to.equal(0)
    expect(out.length).to.equal(1)
    expect(out[0]).to.match(/^service web\.deep\.k\.k/)
  })

  it('keeps serving, and says rejected, when a table passes check but its instances cannot be read', async () => {
    const a = await startUpstream('la')
    closers.push(() => a.close())
    await putNode(ctx.admin, '/services/la/i', { host: '127.0.0.1', port: a.port })
    // A service path only another credential may read: the proxy's warm-up read is refused.
    const other = new ZkSession({ connect: ctx.zk.connectString, sessionTimeoutMs: 4000, logger: silentLogger, auth: [{ scheme: 'digest', credentials: 'other:pw' }] })
    other.start()
    closers.push(() => other.close())
    await other.create('/services/locked', Buffer.alloc(0), 'persistent', [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('auth', ''))])
    const root = '/zoo-proxy/fleets/locked'
    const dir = tempDir(closers)
    const io = { out: () => {}, err: () => {} }
    const push = async (services: object[]): Promise<number> => {
      const file = path.join(dir, `t-${Math.random().toString(36).slice(2)}.json`)
      writeFileSync(file, JSON.stringify({ services }))
      return runFleet(['push', file], { zookeeper: ctx.zk.connectString, fleet: root, auth: AUTH }, io)
    }
    expect(await push([{ name: 'web', path: '/services/la' }])).to.equal(0)
    const config = await validateConfig(
      { listen: '127.0.0.1:0', zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000, auth: [{ credentials: AUTH }] }, warmingTimeoutMs: 1000, log: { level: 'silent' }, fleet: { path: root, id: 'l1' } },
      process.cwd(),
    )
    const proxy = await createProxy(config, { logger: silentLogger })
    closers.push(() => proxy.close())
    await proxy.start()
    const port = proxy.address().port
    const good = (await waitThroughErrors(() => proxy.fleet!.serving(), 'the first table'))!.table
    expect(await push([{ name: 'web', path: '/services/la', match: { pathPrefix: '/' } }, { name: 'locked', path: '/services/locked', match: { pathPrefix: '/locked' } }])).to.equal(0)
    const st = await waitThroughErrors(async () => {
      const node = await ctx.admin.getData(`${root}/proxies/l1`)
      const s = node === null ? null : parseProxyStatus(node)
      return s?.rejected !== null && s?.rejected.table !== good ? s : null
    }, 'a rejection of the unreadable table', 20_000)
    expect(st.applied).to.equal(good)
    expect(st.rejected!.problems.join('\n')).to.match(/locked/)
    expect((await send(port)).body).to.equal('la')
    expect(proxy.fleet!.serving()!.table).to.equal(good)
    // Once the path can be read the same table is tried again, with no new event on `active`:
    // a refusal of the moment must not leave this proxy behind the fleet for good.
    const lk = await startUpstream('lk')
    closers.push(() => lk.close())
    await other.remove('/services/locked')
    await putNode(ctx.admin, '/services/locked/i', { host: '127.0.0.1', port: lk.port })
    await waitThroughErrors(async () => ((await send(port, '/locked')).body === 'lk' ? true : null), 'the table tried again', 20_000)
    const after = parseProxyStatus((await ctx.admin.getData(`${root}/proxies/l1`))!)
    expect(after.applied).to.equal(st.rejected!.table)
    expect(after.rejected).to.equal(null)
  })

  it('fleet push never lets active name a table it did not write, whatever enters tables/ meanwhile', async () => {
    const root = '/zoo-proxy/fleets/race'
    const paths = fleetPaths(root)
    const writer = new ZkSession({ connect: ctx.zk.connectString, sessionTimeoutMs: 4000, logger: silentLogger, auth: [{ scheme: 'digest', credentials: AUTH }] })
    writer.start()
    closers.push(() => writer.close())
    const dir = tempDir(closers)
    const err: string[] = []
    const push = async (service: string, beforeCommit?: () => Promise<void>) => {
      const file = path.join(dir, `t-${Math.random().toString(36).slice(2)}.json`)
      writeFileSync(file, JSON.stringify({ services: [{ name: service, path: '/services/a', allowEmpty: true }] }))
      return runFleet(['push', file], { zookeeper: ctx.zk.connectString, fleet: root, auth: AUTH }, { out: () => {}, err: (l) => err.push(l), ...(beforeCommit === undefined ? {} : { beforeCommit }) })
    }
    expect(await push('first')).to.equal(0)
    expect(await push('second')).to.equal(0)
    const first = (await ctx.admin.getChildren(paths.tables))!.sort()[0]!
    // Between reading tables/ and the multi: a foreign table created (it takes the predicted
    // number), or an old one deleted (the number moves on).
    const meddle = [
      { what: 'a foreign table created', act: () => writer.multi([{ op: 'create', path: `${paths.tables}/t-`, data: Buffer.from(JSON.stringify({ services: [{ name: 'foreign', path: '/services/a' }] })), sequential: true }]) },
      { what: 'an old table deleted', act: () => writer.remove(paths.table(first)) },
    ]
    for (const m of meddle) {
      const before = (await ctx.admin.getDataStat(paths.active))!
      const code = await push('mine', async () => void (await m.act()))
      const after = (await ctx.admin.getDataStat(paths.active))!
      const named = (JSON.parse(after.data.toString()) as { table: string }).table
      const table = await ctx.admin.getData(paths.table(named))
      expect(table, `${m.what}: active names ${named}, which exists`).to.not.equal(null)
      const services = (JSON.parse(table!.toString()) as { services: { name: string }[] }).services
      if (code === 0) {
        expect(services[0]!.name, m.what).to.equal('mine')
        // One write: no moment at which active named another table.
        expect(after.version, m.what).to.equal(before.version + 1)
      } else {
        expect(code, `${m.what}: ${err.join('; ')}`).to.equal(3)
        expect(after.version, m.what).to.equal(before.version)
      }
    }
  })
})

describe('fleet: proxies without the push credential', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()
  const closers = useClosers()

  it('report what they applied under a proxies/ folder pushed with --auth, which only the credential may change', async () => {
    const root = '/zoo-proxy/fleets/open-status'
    const paths = fleetPaths(root)
    const a = await startUpstream('a')
    closers.push(() => a.close())
    await putNode(ctx.admin, '/services/open-status/i', { host: '127.0.0.1', port: a.port })
    const dir = tempDir(closers)
    const file = path.join(dir, 'table.json')
    writeFileSync(file, JSON.stringify({ services: [{ name: 'web', path: '/services/open-status' }] }))
    const io = { out: () => {}, err: () => {} }
    expect(await runFleet(['push', file], { zookeeper: ctx.zk.connectString, fleet: root, auth: AUTH }, io)).to.equal(0)
    const config = await validateConfig(
      { listen: '127.0.0.1:0', zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000 }, log: { level: 'silent' }, fleet: { path: root, id: 'no-credential' } },
      process.cwd(),
    )
    const proxy = await createProxy(config, { logger: silentLogger })
    closers.push(() => proxy.close())
    await proxy.start()
    const lines: string[] = []
    const code = await runFleet(['status'], { zookeeper: ctx.zk.connectString, fleet: root, 'wait-ms': '20000' }, { out: (l: string) => lines.push(l), err: () => {} })
    expect(code, lines.join('\n')).to.equal(0)
    expect(lines.join('\n')).to.match(/no-credential applied t-\d+ meant t-\d+ ok/)
    // Anyone may add to proxies/; nobody without the credential may take the folder away.
    const acls = (await ctx.admin.getACL(paths.proxies))!
    const world = acls.find((x) => x.id.scheme === 'world')!
    const perms = (world as unknown as { permission: number }).permission
    expect(perms & zookeeper.Permission.CREATE).to.not.equal(0)
    expect(perms & (zookeeper.Permission.WRITE | zookeeper.Permission.DELETE | zookeeper.Permission.ADMIN)).to.equal(0)
  })
})
