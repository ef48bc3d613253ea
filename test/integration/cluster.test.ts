import { expect } from 'chai'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { fourLetterWord, freePorts } from '../../scripts/zookeeper.js'
import { putNode, send, startUpstream, uniquePath, useZooKeeper, waitFor } from '../support/helpers.js'

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))

/** Client connections the ZooKeeper server holds (the `cons` four-letter word, one line each). */
async function zkConnections(port: number): Promise<number> {
  const cons = await fourLetterWord(port, 'cons')
  return cons.split('\n').filter((l) => l.includes('sid=')).length
}

describe('workers: N (node:cluster)', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()

  it('serves one port from two workers with one ZooKeeper session, and follows changes', async () => {
    const svc = uniquePath()
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: a.port })
    const [port, admin] = await freePorts(2)
    const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-cluster-'))
    const file = path.join(dir, 'proxy.json')
    writeFileSync(file, JSON.stringify({ listen: `127.0.0.1:${port}`, admin: `127.0.0.1:${admin}`, workers: 2, zookeeper: { connect: ctx.zk.connectString }, log: { level: 'warn' }, services: [{ name: 'example', path: svc }] }))
    const before = await zkConnections(ctx.zk.nodes[0]!.clientPort)
    const child = spawn(process.execPath, [CLI, '--config', file], { stdio: 'ignore' })
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    try {
      await waitFor(async () => (await send(port!).catch(() => ({ body: '' }))).body === 'a', 'the workers to serve')
      const workers = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)
      expect(workers).to.have.length(2)
      expect(await zkConnections(ctx.zk.nodes[0]!.clientPort)).to.equal(before + 1)
      await putNode(ctx.admin, `${svc}/b`, { host: '127.0.0.1', port: b.port })
      // Every worker got the new snapshot: over many requests (spread by the kernel over both), both answer.
      await waitFor(async () => {
        const seen = new Set<string>()
        for (let i = 0; i < 20; i++) seen.add((await send(port!)).body)
        return seen.has('a') && seen.has('b')
      }, 'b in rotation')
      // Summed over the workers by the primary (a worker still starting may miss one scrape).
      await waitFor(async () => {
        const res = await fetch(`http://127.0.0.1:${admin}/metrics`)
        return res.status === 200 && /zoo_proxy_requests_total\{service="example",code="200"\} \d+/.test(await res.text())
      }, 'aggregated metrics', 20_000)
    } finally {
      child.kill('SIGTERM')
    }
    expect(await exited).to.equal(0)
    await a.close()
    await b.close()
  })
})
