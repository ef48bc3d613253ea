// `npm run bench:strategies`: three upstreams, one of them slow (50 ms against 5 ms), the same
// autocannon load through each strategy in one run. Prints req/s, p50, p99 and each instance's share.
import { startZooKeeper } from '../scripts/zookeeper.js'
import { ZkSession } from '../lib/discovery/zk-session.js'
import { silentLogger } from '../lib/log.js'
import { cannon, requestsByPort, spawnProxy, spawnUpstreams, stopChild, table } from './common.js'

const durationS = Number(process.env.BENCH_DURATION_S ?? 5)
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50)
const specs = [
  { name: 'fast-a', delayMs: 5 },
  { name: 'fast-b', delayMs: 5 },
  { name: 'slow-c', delayMs: 50 },
]
const strategies: [string, object][] = [
  ['round-robin', { strategy: 'round-robin' }],
  ['least-loaded (p2c)', { strategy: 'least-loaded' }],
  ['least-loaded (all)', { strategy: { name: 'least-loaded', choices: 'all' } }],
  ['weighted', { strategy: 'weighted' }],
  ['random', { strategy: 'random' }],
  ['consistent-hash', { strategy: { name: 'consistent-hash', key: 'header:x-user' } }],
]

const zk = await startZooKeeper()
const ups = await spawnUpstreams(specs)
const admin = new ZkSession({ connect: zk.connectString, sessionTimeoutMs: 10_000, logger: silentLogger })
admin.start()
await admin.ensureParents('/bench/service/x')
await admin.create('/bench/service', Buffer.alloc(0), 'persistent').catch(() => {})
for (const [i, s] of specs.entries()) {
  await admin.create(`/bench/service/${s.name}`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: ups.ports[i] })), 'persistent')
}

console.log(`# strategies: ${connections} connections, ${durationS} s each, upstreams ${specs.map((s) => `${s.name} ${s.delayMs} ms`).join(', ')}`)
const rows: (string | number)[][] = []
let user = 0
for (const [label, service] of strategies) {
  const proxy = await spawnProxy(zk.dir, zk.connectString, service)
  await cannon(`http://127.0.0.1:${proxy.port}/`, { connections, durationS: 1 }) // warm-up
  const before = await requestsByPort(proxy.adminPort)
  const r = await cannon(`http://127.0.0.1:${proxy.port}/`, {
    connections,
    durationS,
    setupHeaders: () => ({ 'x-user': `u${user++ % 1000}` }),
  })
  const after = await requestsByPort(proxy.adminPort)
  const counts = ups.ports.map((p) => (after[p] ?? 0) - (before[p] ?? 0))
  const total = counts.reduce((a, b) => a + b, 0) || 1
  rows.push([label, Math.round(r.rps), r.p50, r.p99, r.errors + r.non2xx, ...counts.map((c) => `${((100 * c) / total).toFixed(1)}%`)])
  await proxy.stop()
}
console.log(table(['strategy', 'req/s', 'p50 ms', 'p99 ms', 'errors', ...specs.map((s) => `${s.name} share`)], rows))
admin.close()
await stopChild(ups.child)
await zk.stop()
process.exit(0)
