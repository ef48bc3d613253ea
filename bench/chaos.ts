// `npm run bench:chaos`: steady load while upstreams are SIGKILLed and restarted (their znodes stay
// registered, as after a crash), through each strategy. Prints the success rate, latency and the
// retry amplification (upstream attempts per client request).
import { startZooKeeper, freePort } from '../scripts/zookeeper.js'
import { ZkSession } from '../lib/discovery/zk-session.js'
import { silentLogger } from '../lib/log.js'
import { seededRandom } from '../test/support/random.js'
import { cannon, requestsByPort, spawnProxy, spawnUpstreams, stopChild, table } from './common.js'
import type { ChildProcess } from 'node:child_process'

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
for (const [label, service] of strategies) {
  for (let i = 0; i < 3; i++) await startUp(i)
  // A short ejection so a restarted instance comes back within the run.
  const proxy = await spawnProxy(zk.dir, zk.connectString, { ...service, outlier: { baseEjectionMs: 1000 } })
  const random = seededRandom(42)
  let kills = 0
  const chaos = setInterval(() => {
    const i = Math.floor(random() * 3)
    const p = procs[i]
    if (!p) return
    procs[i] = null
    p.kill('SIGKILL')
    kills++
    setTimeout(() => void startUp(i), 300)
  }, 1000)
  const before = await requestsByPort(proxy.adminPort)
  const r = await cannon(`http://127.0.0.1:${proxy.port}/`, { connections, durationS, setupHeaders: () => ({ 'x-user': `u${user++ % 500}` }) })
  clearInterval(chaos)
  const after = await requestsByPort(proxy.adminPort)
  const attempts = ports.reduce((a, p) => a + (after[p] ?? 0) - (before[p] ?? 0), 0)
  const ok = r.requests - r.non2xx - r.errors
  rows.push([label, kills, r.requests, `${((100 * ok) / Math.max(1, r.requests)).toFixed(3)}%`, r.p50, r.p99, (attempts / Math.max(1, r.requests)).toFixed(3)])
  await proxy.stop()
  await new Promise((res) => setTimeout(res, 400))
  for (const p of procs) if (p) await stopChild(p)
}
console.log(table(['strategy', 'kills', 'requests', 'success', 'p50 ms', 'p99 ms', 'attempts/request'], rows))
admin.close()
await zk.stop()
process.exit(0)
