// `npm run bench:chaos`: steady load while upstreams are SIGKILLed and restarted (their znodes stay
// registered, as after a crash), through each strategy. Prints the success rate, latency and the
// retry amplification (upstream attempts per client request).
import { startZooKeeper, freePort } from '../scripts/zookeeper.js'
import { ZkSession } from '../lib/discovery/zk-session.js'
import { silentLogger } from '../lib/log.js'
import { seededRandom } from '../test/support/random.js'
import { cannon, requestsByPort, spawnProxy, spawnUpstreams, stopChild, table } from './common.js'
import type { ChildProcess } from 'node:child_process'

// `-- --grpc`: the gRPC chaos run (issue 27) instead, in a module of its own.
if (process.argv.includes('--grpc')) {
  await import('./grpc-chaos.js')
  process.exit(0)
}

const durationS = Number(process.env.BENCH_DURATION_S ?? 8)
const connections = Number(process.env.BENCH_CONNECTIONS ?? 20)
const strategies: [string, object][] = [
  ['round-robin', { strategy: 'round-robin' }],
  ['least-loaded', { strategy: 'least-loaded' }],
  ['weighted', { strategy: 'weighted' }],
  ['consistent-hash', { strategy: { name: 'consistent-hash', key: 'header:x-user' } }],
  ['random', { strategy: 'random' }],
]

const zk = await startZooKeeper()
const admin = new ZkSession({ connect: zk.connectString, sessionTimeoutMs: 10_000, logger: silentLogger })
admin.start()
await admin.ensureParents('/bench/service/x')
await admin.create('/bench/service', Buffer.alloc(0), 'persistent').catch(() => {})
const ports = [await freePort(), await freePort(), await freePort()]
for (const [i, port] of ports.entries()) {
  await admin.create(`/bench/service/u${i}`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port })), 'persistent')
}

const procs: (ChildProcess | null)[] = [null, null, null]
const startUp = async (i: number) => {
  procs[i] = (await spawnUpstreams([{ name: `u${i}`, delayMs: 2, port: ports[i] }])).child
}

console.log(`# chaos: ${connections} connections, ${durationS} s per strategy; every 1 s one of 3 upstreams is SIGKILLed and restarted 300 ms later`)
const rows: (string | number)[][] = []
let user = 0
try {
  for (const [label, service] of strategies) rows.push(await round(label, service))
  console.log(table(['strategy', 'kills', 'requests', 'success', 'p50 ms', 'p99 ms', 'attempts/request'], rows))
} finally {
  admin.close()
  // Removes its temporary folder, the proxies' config files included.
  await zk.stop()
}
process.exit(0)

/** One strategy's run: its own upstreams and proxy, all of them stopped before it returns. */
async function round(label: string, service: object): Promise<(string | number)[]> {
  for (let i = 0; i < 3; i++) await startUp(i)
  // A short ejection so a restarted instance comes back within the run.
  const proxy = await spawnProxy(zk.dir, zk.connectString, { ...service, outlier: { baseEjectionMs: 1000 } })
  const random = seededRandom(42)
  let kills = 0
  // A restart still scheduled or starting when the round ends would bind its port while the next
  // round's upstream holds it (EADDRINUSE): both are tracked, cancelled or awaited at the end.
  const restarts = new Set<NodeJS.Timeout>()
  const starting = new Set<Promise<void>>()
  const chaos = setInterval(() => {
    const i = Math.floor(random() * 3)
    const p = procs[i]
    if (!p) return
    procs[i] = null
    p.kill('SIGKILL')
    kills++
    const timer = setTimeout(() => {
      restarts.delete(timer)
      const started: Promise<void> = startUp(i).finally(() => starting.delete(started))
      starting.add(started)
    }, 300)
    restarts.add(timer)
  }, 1000)
  try {
    const before = await requestsByPort(proxy.adminPort)
    const r = await cannon(`http://127.0.0.1:${proxy.port}/`, { connections, durationS, setupHeaders: () => ({ 'x-user': `u${user++ % 500}` }) })
    const after = await requestsByPort(proxy.adminPort)
    const attempts = ports.reduce((a, p) => a + (after[p] ?? 0) - (before[p] ?? 0), 0)
    const ok = r.requests - r.non2xx - r.errors
    return [label, kills, r.requests, `${((100 * ok) / Math.max(1, r.requests)).toFixed(3)}%`, r.p50, r.p99, (attempts / Math.max(1, r.requests)).toFixed(3)]
  } finally {
    clearInterval(chaos)
    for (const t of restarts) clearTimeout(t)
    restarts.clear()
    await Promise.allSettled([...starting])
    await proxy.stop()
    for (const [i, p] of procs.entries()) {
      if (p) await stopChild(p)
      procs[i] = null
    }
  }
}
