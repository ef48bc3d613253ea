// Issue 25: one routing table in ZooKeeper for every proxy. Ten proxies (in this process, to keep
// the CPU for ZooKeeper) follow one fleet path on a real 3-node ensemble under steady load, while
// tables are pushed, refused, tried on a canary, promoted, rolled back, raced, and pushed through
// the loss of the leader. Times to converge are measured and printed, never asserted.

import { expect } from 'chai'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { validateConfig } from '../../lib/config.js'
import { ConfigError } from '../../lib/errors.js'
import { ZkSession } from '../../lib/discovery/zk-session.js'
import { FleetUsageError, runFleet } from '../../lib/fleet-cli.js'
import { fleetPaths, inPercent, parseProxyStatus } from '../../lib/fleet/layout.js'
import type { ProxyStatus } from '../../lib/fleet/layout.js'
import { silentLogger } from '../../lib/log.js'
import { createProxy } from '../../lib/proxy.js'
import type { ZooProxy } from '../../lib/proxy.js'
import { metric, putNode, send, spawnNode, startUpstream, tempDir, useClosers, useZooKeeper, waitFor, waitThroughErrors } from '../support/helpers.js'
import type { Closers } from '../support/helpers.js'

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))
const AUTH = 'fleet-ops:s3cret'
const ROOT = '/zoo-proxy/fleets/prod'
const P = fleetPaths(ROOT)

interface Member {
  id: string
  proxy: ZooProxy
  port: number
}

/** A runFleet call with its output kept; a ConfigError or usage error is exit 2, as cli.ts maps it. */
async function fleet(connect: string, args: string[], extra: Record<string, string> = {}, beforeCommit?: () => Promise<void>): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = []
  const err: string[] = []
  // `--name value` pairs as cli.ts's parseArgs hands them over; the rest are positionals.
  const positionals: string[] = []
  const values: Record<string, string> = { zookeeper: connect, fleet: ROOT, auth: AUTH, ...extra }
  for (let i = 0; i < args.length; i++) {
    if (args[i]!.startsWith('--')) values[args[i]!.slice(2)] = args[++i]!
    else positionals.push(args[i]!)
  }
  try {
    const code = await runFleet(positionals, values, { out: (l) => out.push(l), err: (l) => err.push(l), ...(beforeCommit === undefined ? {} : { beforeCommit }) })
    return { code, out, err }
  } catch (e) {
    if (e instanceof ConfigError) return { code: 2, out, err: [...e.problems] }
    if (e instanceof FleetUsageError) return { code: 2, out, err: [(e as Error).message] }
    throw e
  }
}

/** Sequential GETs spread over every member until stopped; counts every status (0: connection error). */
function steadyLoad(members: () => readonly Member[], workers = 2) {
  const statuses: Record<number, number> = {}
  let stopped = false
  let n = 0
  const loops = Array.from({ length: workers }, async () => {
    while (!stopped) {
      const m = members()[n++ % members().length]!
      const r = await send(m.port).catch(() => ({ status: 0 }))
      statuses[r.status] = (statuses[r.status] ?? 0) + 1
      await new Promise((res) => setTimeout(res, 2))
    }
  })
  return {
    async stop() {
      stopped = true
      await Promise.all(loops)
      return statuses
    },
  }
}

describe('fleet: one routing table in ZooKeeper for ten proxies (3-node ensemble)', function () {
  this.timeout(120_000)
  const ctx = useZooKeeper(3)
  const closers = useClosers()
  const members: Member[] = []
  let writer: ZkSession
  let dir: string
  let svcA: string
  let svcB: string
  const outer: Closers = []

  before(async function () {
    this.timeout(60_000)
    writer = new ZkSession({ connect: ctx.zk.connectString, sessionTimeoutMs: 4000, logger: silentLogger, auth: [{ scheme: 'digest', credentials: AUTH }] })
    writer.start()
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    outer.push(() => a.close(), () => b.close())
    svcA = '/services/a'
    svcB = '/services/b'
    await putNode(ctx.admin, `${svcA}/i`, { host: '127.0.0.1', port: a.port })
    await putNode(ctx.admin, `${svcB}/i`, { host: '127.0.0.1', port: b.port })
    dir = tempDir(outer, 'zoo-proxy-fleet-')
    for (let i = 0; i < 10; i++) members.push(await startMember(`p${i}`))
  })
  after(async function () {
    this.timeout(60_000)
    for (const m of members) await m.proxy.close()
    writer?.close()
    while (outer.length) await outer.pop()!()
  })
  afterEach(async function () {
    this.timeout(60_000)
    for (const n of ctx.zk.nodes) n.start()
    await ctx.zk.waitServing(30_000)
  })

  async function memberConfig(id: string) {
    return validateConfig(
      {
        listen: '127.0.0.1:0',
        ...(id === 'p0' ? { admin: '127.0.0.1:0' } : {}),
        zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000, auth: [{ credentials: AUTH }], snapshotFile: path.join(dir, `${id}.snapshot.json`) },
        log: { level: 'silent' },
        fleet: { path: ROOT, id },
      },
      process.cwd(),
    )
  }

  async function startMember(id: string): Promise<Member> {
    const proxy = await createProxy(await memberConfig(id), { logger: silentLogger })
    await proxy.start()
    return { id, proxy, port: proxy.address().port }
  }

  /** Every proxy's status node, by id. */
  async function statuses(): Promise<Map<string, ProxyStatus>> {
    const out = new Map<string, ProxyStatus>()
    for (const id of (await ctx.admin.getChildren(P.proxies)) ?? []) {
      const node = await ctx.admin.getData(P.proxy(id))
      if (node !== null) out.set(id, parseProxyStatus(node))
    }
    return out
  }

  /** Waits until every member's status satisfies `ok`; returns how long that took (ms), for the report. */
  async function converge(what: string, ok: (s: ProxyStatus, id: string) => boolean, timeoutMs = 20_000): Promise<number> {
    const started = Date.now()
    await waitThroughErrors(async () => {
      const all = await statuses()
      return members.every((m) => all.has(m.id) && ok(all.get(m.id)!, m.id))
    }, what, timeoutMs, 10)
    const took = Date.now() - started
    console.log(`      measured: ${what}: ${took} ms`)
    return took
  }

  function tableFile(services: object[]): string {
    const file = path.join(dir, `table-${Date.now()}-${Math.random().toString(36).slice(2)}.yaml`)
    writeFileSync(file, JSON.stringify({ services }))
    return file
  }

  async function active(): Promise<{ table: string; canary?: { table: string } }> {
    return JSON.parse((await ctx.admin.getData(P.active))!.toString())
  }

  /** Writes a table the way push does but without its checks: what a careless or hostile writer could do. */
  async function rawPush(services: unknown[]): Promise<string> {
    const got = (await writer.getDataStat(P.active))!
    const cur = JSON.parse(got.data.toString()) as { table: string }
    const tables = (await writer.getDataStat(P.tables))!
    const name = `t-${String(tables.cversion).padStart(10, '0')}`
    await writer.multi([
      { op: 'create', path: `${P.tables}/t-`, data: Buffer.from(JSON.stringify({ services, message: 'raw', author: 'test', parent: cur.table })), sequential: true },
      { op: 'setData', path: P.active, data: Buffer.from(JSON.stringify({ table: name })), version: got.version },
    ])
    return name
  }

  const bodyOf = async (m: Member) => (await send(m.port)).body

  it('applies a good push on 10 of 10, and fleet status exits 0 only then', async () => {
    expect((await fleet(ctx.zk.connectString, ['status'])).code).to.equal(1)
    const bad = await fleet(ctx.zk.connectString, ['push', tableFile([{ name: 'web', path: svcA, strategy: 'nope' }])])
    expect(bad.code).to.equal(2)
    expect(bad.err.join('\n')).to.include('services[0].strategy')
    expect(await ctx.admin.exists(P.active)).to.equal(false)
    const pushed = await fleet(ctx.zk.connectString, ['push', tableFile([{ name: 'web', path: svcA }]), '--message', 'first'])
    expect(pushed.code, pushed.err.join('\n')).to.equal(0)
    const { table } = await active()
    await converge('good push applied 10/10', (s) => s.applied === table)
    const st = await fleet(ctx.zk.connectString, ['status', '--wait-ms', '5000'])
    expect(st.code, st.out.join('\n')).to.equal(0)
    expect(st.out.filter((l) => l.includes(`applied ${table}`))).to.have.length(10)
    for (const m of members) expect(await bodyOf(m)).to.equal('a')
    const text = await (await fetch(`http://127.0.0.1:${members[0]!.proxy.adminAddress()!.port}/metrics`)).text()
    expect(metric(text, `zoo_proxy_fleet_table_info{table="${table}",role="active"}`)).to.equal(1)
  })

  it('refuses five classes of bad table on every proxy, naming the field, with no failed request', async () => {
    const good = (await active()).table
    const load = steadyLoad(() => members)
    const classes: [string, unknown[], string][] = [
      ['schema error', [{ name: 'web', path: svcA, timeoutMs: -5 }], 'services[0].timeoutMs'],
      ['unknown strategy', [{ name: 'web', path: svcA, strategy: 'no-such-strategy' }], 'services[0].strategy'],
      ['route to an empty service', [{ name: 'web', path: svcA }, { name: 'empty', path: '/services/none', match: { pathPrefix: '/none' } }], 'services[1] (empty)'],
      // RE2 runs `(a+)+$` in linear time, so what a linear engine must refuse is a construct only
      // backtracking can run: a backreference.
      ['backtracking regex', [{ name: 'web', path: svcA, match: { headers: { 'x-canary': { regex: '(a+)\\1' } } } }], 'services[0].match.headers.x-canary.regex'],
    ]
    for (const [what, services, field] of classes) {
      const name = await rawPush(services)
      await converge(`${what} refused 10/10`, (s) => s.applied === good && s.rejected?.table === name && s.rejected.problems.some((p) => p.includes(field)))
    }
    // The fifth class: a push against a version of `active` that is no longer current.
    const got = (await writer.getDataStat(P.active))!
    await rawPush([{ name: 'web', path: svcA, timeoutMs: 1000 }])
    // Counted through the writer's own session: ZooKeeper's reads are ordered per session, and
    // another session's server may not have seen the last push yet.
    const before = (await writer.getChildren(P.tables))!.length
    let stale: unknown = null
    try {
      await writer.multi([
        { op: 'create', path: `${P.tables}/t-`, data: Buffer.from(JSON.stringify({ services: [], parent: null })), sequential: true },
        { op: 'setData', path: P.active, data: Buffer.from('{"table":"t-0000000000"}'), version: got.version },
      ])
    } catch (err) {
      stale = err
    }
    expect(String(stale)).to.include('BAD_VERSION')
    expect((await writer.getChildren(P.tables))!.length).to.equal(before)
    const latest = (await active()).table
    await converge('the push after the refusals applied 10/10', (s) => s.applied === latest)
    expect(await load.stop()).to.have.keys('200')
    const text = await (await fetch(`http://127.0.0.1:${members[0]!.proxy.adminAddress()!.port}/metrics`)).text()
    expect(metric(text, 'zoo_proxy_fleet_rejections_total')).to.be.at.least(4)
  })

  it('sends a canary of 1 in 10 to exactly that proxy; promote and rollback converge on 10 of 10', async () => {
    const base = (await active()).table
    const load = steadyLoad(() => members)
    const pushed = await fleet(ctx.zk.connectString, ['push', tableFile([{ name: 'web', path: svcB }]), '--canary-proxies', 'p3', '--message', 'try b'])
    expect(pushed.code, pushed.err.join('\n')).to.equal(0)
    const canary = (await active()).canary!.table
    await converge('canary 1/10 applied', (s, id) => s.applied === (id === 'p3' ? canary : base))
    expect((await fleet(ctx.zk.connectString, ['status', '--wait-ms', '5000'])).code).to.equal(0)
    for (const m of members) expect(await bodyOf(m)).to.equal(m.id === 'p3' ? 'b' : 'a')
    const text = await (await fetch(`http://127.0.0.1:${members[0]!.proxy.adminAddress()!.port}/metrics`)).text()
    expect(metric(text, `zoo_proxy_fleet_table_info{table="${base}",role="active"}`)).to.equal(1)
    expect(members[3]!.proxy.fleet!.serving()).to.deep.equal({ table: canary, role: 'canary' })

    expect((await fleet(ctx.zk.connectString, ['promote'])).code).to.equal(0)
    await converge('promote 10/10', (s) => s.applied === canary)
    for (const m of members) expect(await bodyOf(m)).to.equal('b')
    const rolled = await fleet(ctx.zk.connectString, ['rollback'])
    expect(rolled.code, rolled.err.join('\n')).to.equal(0)
    await converge('rollback 10/10', (s) => s.applied === base)
    for (const m of members) expect(await bodyOf(m)).to.equal('a')
    expect(await load.stop()).to.have.keys('200')

    const hist = await fleet(ctx.zk.connectString, ['history'])
    expect(hist.out.find((l) => l.startsWith(canary))).to.include('try b')
    expect(hist.out.find((l) => l.startsWith(base))).to.include('[active]')
    // Bounded: --limit N reads and prints the newest N tables only, and says how many it left out.
    const newest = await fleet(ctx.zk.connectString, ['history', '--limit', '1'])
    expect(newest.code).to.equal(0)
    const tableLines = newest.out.filter((l) => /^t-\d{10} /.test(l))
    expect(tableLines).to.have.length(1)
    expect(tableLines[0]!.startsWith(`${canary} `)).to.equal(true)
    expect(newest.out[0]).to.match(/^\(\d+ older tables not shown; --limit \d+ shows them\)$/)
    for (const bad of ['0', '-1', '1.5', 'x', '100001']) {
      const r = await fleet(ctx.zk.connectString, ['history', '--limit', bad])
      expect(r.code, bad).to.equal(2)
      expect(r.err.join(' '), bad).to.include('--limit must be an integer 1..100000')
    }
    const d = await fleet(ctx.zk.connectString, ['diff', base, canary])
    expect(d.out).to.include(`service web.path: "${svcA}" -> "${svcB}"`)
  })

  it('lets exactly one of two concurrent pushers win; the other exits 3 naming the winner', async () => {
    for (let round = 0; round < 3; round++) {
      // Counted through the writer's own session: ZooKeeper's reads are ordered per session, and
      // another session's server may not have seen the last push yet.
      const before = (await writer.getChildren(P.tables))!.length
      // Both have read the same `active` before either commits: a real race, not two pushes in a row.
      let arrived = 0
      let release!: () => void
      const bothRead = new Promise<void>((r) => (release = r))
      const barrier = async () => {
        if (++arrived === 2) release()
        await bothRead
      }
      const [x, y] = await Promise.all([
        fleet(ctx.zk.connectString, ['push', tableFile([{ name: 'web', path: svcA, timeoutMs: 1001 + round }])], {}, barrier),
        fleet(ctx.zk.connectString, ['push', tableFile([{ name: 'web', path: svcA, timeoutMs: 2001 + round }])], {}, barrier),
      ])
      expect([x.code, y.code].sort()).to.deep.equal([0, 3])
      const won = (await active()).table
      const loser = x.code === 3 ? x : y
      expect(loser.err.join('\n')).to.include(won)
      expect((await ctx.admin.getChildren(P.tables))!.length).to.equal(before + 1)
    }
    const won = (await active()).table
    await converge('the winner applied 10/10', (s) => s.applied === won)
  })

  it('sends a percent canary to the proxies whose id hashes in, and status waits for exactly those', async () => {
    const base = (await active()).table
    const pushed = await fleet(ctx.zk.connectString, ['push', tableFile([{ name: 'web', path: svcA, timeoutMs: 7777 }]), '--canary-percent', '30'])
    expect(pushed.code, pushed.err.join('\n')).to.equal(0)
    const canary = (await active()).canary!.table
    const chosen = members.filter((m) => inPercent(m.id, 30)).map((m) => m.id)
    await converge(`percent canary on ${chosen.length}/10 (${chosen.join(',')})`, (s, id) => s.applied === (chosen.includes(id) ? canary : base))
    const st = await fleet(ctx.zk.connectString, ['status', '--wait-ms', '5000'])
    expect(st.code).to.equal(0)
    expect(st.out.filter((l) => l.includes(`applied ${canary}`)).map((l) => l.split(' ')[0])).to.deep.equal(chosen)
    expect((await fleet(ctx.zk.connectString, ['promote'])).code).to.equal(0)
    await converge('percent canary promoted 10/10', (s) => s.applied === canary)
  })

  it('leaves no proxy on a half-applied table when the leader is killed during a push', async () => {
    const before = (await active()).table
    const load = steadyLoad(() => members)
    const leader = await ctx.zk.leader()
    const pushing = fleet(ctx.zk.connectString, ['push', tableFile([{ name: 'web', path: svcB }, { name: 'also-a', path: svcA, match: { pathPrefix: '/also' } }])]).catch((err: unknown) => ({ code: 1, out: [], err: [String(err)] }))
    await leader!.stop('SIGKILL')
    const result = await pushing
    await ctx.zk.waitServing(30_000, 2)
    const now = await waitThroughErrors(() => active(), 'active readable again', 30_000)
    // Either the push went through whole or not at all; every proxy converges on what active says.
    expect([before, now.table]).to.include(now.table)
    if (result.code === 0) expect(now.table).to.not.equal(before)
    await converge('after the leader was killed, 10/10 on the active table', (s) => s.applied === now.table, 30_000)
    const expected = now.table === before ? 'a' : 'b'
    for (const m of members) {
      expect(await bodyOf(m)).to.equal(expected)
      expect(m.proxy.services.map((s) => s.name)).to.deep.equal(now.table === before ? ['web'] : ['web', 'also-a'])
    }
    expect(await load.stop()).to.have.keys('200')
  })

  it('serves its last applied table when restarted while ZooKeeper is down', async () => {
    const table = (await active()).table
    const m = members[9]!
    await converge('all on the active table', (s) => s.applied === table)
    const expected = await bodyOf(m)
    await m.proxy.close()
    for (const n of ctx.zk.nodes) await n.stop('SIGKILL')
    const again = await createProxy(await memberConfig(m.id), { logger: silentLogger })
    closers.push(() => again.close())
    await again.start()
    members[9] = { id: m.id, proxy: again, port: again.address().port }
    expect(again.ready).to.equal(true)
    expect(again.fleet!.serving()?.table).to.equal(table)
    expect(await bodyOf(members[9]!)).to.equal(expected)
  })

  it('refuses services in a fleet member config, and the CLI exits 2 for a bad table file', async () => {
    let problems: string[] = []
    try {
      await validateConfig({ fleet: { path: ROOT }, services: [{ name: 'x', path: '/x' }] }, process.cwd())
    } catch (err) {
      problems = [...(err as ConfigError).problems]
    }
    expect(problems.join('\n')).to.match(/^services: not allowed with fleet/)
    const c = spawnNode(closers, [CLI, 'fleet', 'push', tableFile([{ name: 'web', path: 'no-slash' }]), '--zookeeper', ctx.zk.connectString, '--fleet', ROOT])
    expect(await c.exited).to.equal(2)
    expect(c.stderr()).to.include('services[0].path')
  })
})

describe('fleet: a world-writable active node', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()
  const closers = useClosers()

  it('is not followed unless fleet.allowOpenAcl is true', async () => {
    const up = await startUpstream('open')
    closers.push(() => up.close())
    await putNode(ctx.admin, '/services/open/i', { host: '127.0.0.1', port: up.port })
    const file = path.join(tempDir(closers), 't.json')
    writeFileSync(file, JSON.stringify({ services: [{ name: 'web', path: '/services/open' }] }))
    // Pushed without --auth: every node open to the world.
    expect(await runFleet(['push', file], { zookeeper: ctx.zk.connectString, fleet: '/open-fleet' }, { out: () => {}, err: () => {} })).to.equal(0)
    const start = async (allowOpenAcl: boolean, id: string) => {
      const config = await validateConfig({ listen: '127.0.0.1:0', zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000 }, log: { level: 'silent' }, fleet: { path: '/open-fleet', id, allowOpenAcl } }, process.cwd())
      const p = await createProxy(config, { logger: silentLogger })
      closers.push(() => p.close())
      await p.start()
      return p
    }
    const strict = await start(false, 'strict')
    const open = await start(true, 'open')
    await waitFor(() => open.fleet!.serving() !== null, 'the open proxy to apply the table')
    const node = await waitFor(() => ctx.admin.getData('/open-fleet/proxies/strict'), 'the strict proxy status')
    const st = parseProxyStatus(node)
    expect(st.applied).to.equal(null)
    expect(st.rejected?.problems.join('\n')).to.include('writable by the world')
    expect(strict.ready).to.equal(false)
    expect((await send(open.address().port)).body).to.equal('open')
  })
})
