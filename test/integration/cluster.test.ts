import { expect } from 'chai'
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { fourLetterWord } from '../../scripts/zookeeper.js'
import { listeningPorts, metric, putNode, scrape, send, spawnNode, tempDir, uniquePath, useClosers, useZooKeeper, waitFor, waitThroughErrors } from '../support/helpers.js'
import type { Reply } from '../support/helpers.js'

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))

/** Client connections the ZooKeeper server holds (the `cons` four-letter word, one line each). */
async function zkConnections(port: number): Promise<number> {
  const cons = await fourLetterWord(port, 'cons')
  return cons.split('\n').filter((l) => l.includes('sid=')).length
}

/** The child processes of `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
}

/** The local ports of the TCP sockets `pid` holds (Linux /proc: its socket inodes, looked up in /proc/net/tcp*). */
function tcpPortsOf(pid: number): Set<number> {
  const inodes = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m !== null) inodes.add(m[1]!)
    } catch {
      // Closed since the listing.
    }
  }
  const ports = new Set<number>()
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      if (cols.length > 9 && inodes.has(cols[9]!)) ports.add(parseInt(cols[1]!.split(':')[1]!, 16))
    }
  }
  return ports
}

/** An upstream answering its name, that knows the client port of every request it got. */
async function upstream(closers: (() => unknown)[], name: string): Promise<{ port: number; clientPorts: number[] }> {
  const clientPorts: number[] = []
  const server = http.createServer((req, res) => {
    clientPorts.push(req.socket.remotePort!)
    res.end(name)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  closers.push(() => new Promise<void>((r) => (server.close(() => r()), server.closeAllConnections())))
  return { port: (server.address() as AddressInfo).port, clientPorts }
}

describe('workers: N (node:cluster)', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()
  const closers = useClosers()

  /** Whether each of `workers` holds a connection `up` saw requests on: each has forwarded to it. */
  const allForwardedTo = (workers: number[], up: { clientPorts: number[] }) => {
    const seen = new Set(up.clientPorts)
    return workers.every((w) => [...tcpPortsOf(w)].some((p) => seen.has(p)))
  }

  /**
   * `zoo-proxy` with two workers on `svc`, once both serve (each has forwarded a request to `up`);
   * every request sent through it is counted by status.
   */
  async function startCluster(svc: string, up: { clientPorts: number[] }) {
    const file = path.join(tempDir(closers, 'zoo-proxy-cluster-'), 'proxy.json')
    writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', workers: 2, zookeeper: { connect: ctx.zk.connectString }, log: { level: 'info' }, services: [{ name: 'example', path: svc }] }))
    const proc = spawnNode(closers, [CLI, '--config', file])
    const { adminPort } = await listeningPorts(proc, 'primary')
    const { port } = await listeningPorts(proc, 'worker')
    const answered: Record<number, number> = {}
    /** One GET on a connection of its own, so the primary hands each to the next worker in turn. */
    const get = async (): Promise<Reply> => {
      const r = await send(port, '/', { headers: { connection: 'close' } })
      answered[r.status] = (answered[r.status] ?? 0) + 1
      return r
    }
    await waitThroughErrors(async () => (await get()).status === 200, 'a worker to serve')
    const workers = childrenOf(proc.child.pid!)
    expect(workers).to.have.length(2)
    await waitFor(async () => (await get(), allForwardedTo(workers, up)), 'both workers to serve')
    return { proc, port, adminPort, answered, get, workers, file }
  }

  it('serves one port from two workers with one ZooKeeper session, and follows changes', async () => {
    const svc = uniquePath()
    const a = await upstream(closers, 'a')
    const b = await upstream(closers, 'b')
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port })
    const before = await zkConnections(ctx.zk.nodes[0]!.clientPort)
    const { proc, get, workers } = await startCluster(svc, a)
    expect(await zkConnections(ctx.zk.nodes[0]!.clientPort)).to.equal(before + 1)

    await putNode(ctx.admin, `${svc}/b`, { host: '127.0.0.1', port: b.port })
    // Every worker got the new snapshot: each of them sends requests to b.
    await waitFor(async () => (await get(), allForwardedTo(workers, b)), 'b in rotation on both workers')
    proc.child.kill('SIGTERM')
    expect(await proc.exited).to.equal(0)
  })

  it('reloads on POST /reload: the primary refuses a bad file, and on a good one both workers switch', async () => {
    const svc = uniquePath()
    const other = uniquePath('other')
    const a = await upstream(closers, 'a')
    const c = await upstream(closers, 'c')
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port })
    await putNode(ctx.admin, `${other}/c`, { host: '127.0.0.1', port: c.port })
    const { port, adminPort, workers, file } = await startCluster(svc, a)
    const config = JSON.parse(readFileSync(file, 'utf8')) as { services: object[] }
    const reload = async () => {
      const r = await fetch(`http://127.0.0.1:${adminPort}/reload`, { method: 'POST' })
      return { status: r.status, body: (await r.json()) as Record<string, unknown> }
    }
    writeFileSync(file, JSON.stringify({ ...config, services: [{ name: 'example', path: svc, strategy: 'nope' }] }))
    expect((await reload()).status).to.equal(400)
    writeFileSync(file, JSON.stringify({ ...config, services: [...config.services, { name: 'other', path: other, match: { pathPrefix: '/other' } }] }))
    expect(await reload()).to.deep.equal({ status: 200, body: { reloaded: true, added: ['other'], removed: [], changed: [], unchanged: ['example'] } })
    // Each worker routes /other to c once it has switched (one connection per request, so the
    // primary hands them out in turn).
    const other1 = async () => (await send(port, '/other/x', { headers: { connection: 'close' } })).body
    await waitFor(async () => ((await other1()) === 'c' ? allForwardedTo(workers, c) : false), 'both workers to route /other to c')
    expect((await send(port, '/', { headers: { connection: 'close' } })).body).to.equal('a')
  })

  it('moves a service to another path on a reload with no failed request on any worker (issue 21 item 6)', async () => {
    const svc = uniquePath()
    const moved = uniquePath('moved')
    const a = await upstream(closers, 'a')
    const c = await upstream(closers, 'c')
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port })
    await putNode(ctx.admin, `${moved}/c`, { host: '127.0.0.1', port: c.port })
    const { adminPort, workers, file, get, answered } = await startCluster(svc, a)
    const config = JSON.parse(readFileSync(file, 'utf8')) as object
    writeFileSync(file, JSON.stringify({ ...config, services: [{ name: 'example', path: moved }] }))
    const r = await fetch(`http://127.0.0.1:${adminPort}/reload`, { method: 'POST' })
    expect(r.status).to.equal(200)
    // Each worker switches when the primary tells it; until then it serves the old path. The list
    // of the new one reached it first, so it switches to a fed service.
    await waitFor(async () => (await get(), allForwardedTo(workers, c)), 'both workers to route to the new path')
    for (let i = 0; i < 10; i++) expect((await get()).body).to.equal('c')
    expect(Object.keys(answered)).to.deep.equal(['200'])
  })

  it("answers /metrics on the primary with the sum of the workers' counters", async () => {
    const svc = uniquePath()
    const a = await upstream(closers, 'a')
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port })
    const { adminPort, answered, get, workers } = await startCluster(svc, a)
    for (let i = 0; i < 40; i++) expect((await get()).body).to.equal('a')
    // Both workers answered (the upstream sees each one's pooled connection), so the total is a sum.
    const byWorker = workers.map((w) => {
      const ports = tcpPortsOf(w)
      return a.clientPorts.filter((p) => ports.has(p)).length
    })
    expect(byWorker.every((n) => n > 0), `requests by worker: ${byWorker}`).to.equal(true)
    expect(byWorker[0]! + byWorker[1]!).to.equal(a.clientPorts.length)
    // A worker still starting may miss a scrape; once both answer, the sum is exact.
    const series = (code: string) => `zoo_proxy_requests_total{service="example",code="${code}"}`
    let last = ''
    await waitFor(
      async () => {
        last = await scrape(adminPort)
        return Object.entries(answered).every(([code, n]) => metric(last, series(code)) === n)
      },
      `the summed counters to equal ${JSON.stringify(answered)}`,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last scrape: ${last.split('\n').filter((l) => l.startsWith('zoo_proxy_requests_total')).join(', ')}`)
    })
  })

  it('gives workers the config the primary applied, never the file as it is later (found by the reload attack)', async () => {
    const svc = uniquePath()
    const moved = uniquePath('moved')
    const decoy = uniquePath('decoy')
    const a = await upstream(closers, 'a')
    const c = await upstream(closers, 'c')
    const d = await upstream(closers, 'd')
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port })
    await putNode(ctx.admin, `${moved}/c`, { host: '127.0.0.1', port: c.port })
    await putNode(ctx.admin, `${decoy}/d`, { host: '127.0.0.1', port: d.port })
    const { proc, adminPort, workers, file, get } = await startCluster(svc, a)
    const config = JSON.parse(readFileSync(file, 'utf8')) as object
    writeFileSync(file, JSON.stringify({ ...config, services: [{ name: 'example', path: moved }] }))
    expect((await fetch(`http://127.0.0.1:${adminPort}/reload`, { method: 'POST' })).status).to.equal(200)
    // The file changes again, and is not reloaded: what runs stays the applied config.
    writeFileSync(file, JSON.stringify({ ...config, services: [{ name: 'example', path: decoy }] }))
    await waitFor(async () => (await get(), allForwardedTo(workers, c)), 'both workers on the applied config')
    const [crashed, survivor] = workers as [number, number]
    process.kill(crashed, 'SIGKILL')
    const replacement = await waitFor(() => childrenOf(proc.child.pid!).find((w) => w !== survivor && w !== crashed), 'a new worker')
    await waitFor(async () => {
      const r = await get()
      expect([r.status, r.body]).to.deep.equal([200, 'c'])
      return allForwardedTo([replacement], c)
    }, 'the new worker to serve the applied config')
    expect(d.clientPorts).to.deep.equal([])
  })

  it('gives a worker restarted after a crash the latest snapshot', async () => {
    const svc = uniquePath()
    const a = await upstream(closers, 'a')
    const b = await upstream(closers, 'b')
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port })
    const { proc, get, workers } = await startCluster(svc, a)
    // Three snapshots: [a], [a, b], [b]. The last is the one a new worker must get.
    await putNode(ctx.admin, `${svc}/b`, { host: '127.0.0.1', port: b.port })
    await ctx.admin.remove(`${svc}/a`)
    await waitFor(async () => (await get(), allForwardedTo(workers, b)), 'both workers to know b')
    // Connections go to the workers in turn: four answers in a row cover both.
    await waitFor(async () => {
      const answers = new Set<string>()
      for (let i = 0; i < 4; i++) answers.add((await get()).body)
      return answers.size === 1 && answers.has('b')
    }, 'both workers to route to b only')

    const [crashed, survivor] = workers as [number, number]
    process.kill(crashed, 'SIGKILL')
    const replacement = await waitFor(() => childrenOf(proc.child.pid!).find((w) => w !== survivor && w !== crashed), 'a new worker')
    // Until it listens the primary hands every connection to the survivor; then to both in turn.
    const served = () => {
      const ports = tcpPortsOf(replacement)
      return b.clientPorts.filter((p) => ports.has(p)).length
    }
    await waitFor(async () => {
      const r = await get()
      expect([r.status, r.body]).to.deep.equal([200, 'b'])
      return served() >= 3
    }, 'the new worker to answer')
    expect(a.clientPorts.filter((p) => tcpPortsOf(replacement).has(p))).to.deep.equal([])
  })
})
