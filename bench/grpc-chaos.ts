// `npm run bench:chaos -- --grpc` (issue 27, "How it is shown to work"): three gRPC instances
// registered in ZooKeeper (h2c), one answering every call UNAVAILABLE as a draining server does
// while its znode is still there, another SIGKILLed every second and restarted 300 ms later; 20,000
// unary calls over one client channel through zoo-proxy, then through nginx grpc_pass (the
// baseline) in the same run, each with instances of its own. Prints % OK, the statuses that were
// not OK, latency and attempts per call, and the bar (100% OK, at most 1.1 attempts a call)
// as pass/fail lines. A zoo-proxy without an HTTP/2 front (issue 26 §2) is skipped, not failed.
//
// BENCH_GRPC_CALLS (default 20000) and BENCH_GRPC_CONCURRENCY (calls in flight, default 20).
import type { ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { startZooKeeper, freePort } from '../scripts/zookeeper.js'
import { ZkSession } from '../lib/discovery/zk-session.js'
import { silentLogger } from '../lib/log.js'
import { seededRandom } from '../test/support/random.js'
import { requestsByPort, spawnProxy, stopChild, table } from './common.js'
import { echoClient, echoOnce } from './grpc-bench-proto.js'
import { h2Refusal, spawnGrpcInstances, startNginxH2Proxy } from './h2-peers.js'
import { has } from './peers.js'

/** Bounded: a typo must not start a run of a billion calls or a million in flight. */
function envCount(name: string, fallback: number, max: number): number {
  const raw = process.env[name]
  const n = raw === undefined ? fallback : Number(raw)
  if (!Number.isInteger(n) || n < 1 || n > max) throw new RangeError(`${name} must be an integer from 1 to ${max}, got ${raw}`)
  return n
}
const CALLS = envCount('BENCH_GRPC_CALLS', 20_000, 10_000_000)
const CONCURRENCY = envCount('BENCH_GRPC_CONCURRENCY', 20, 10_000)
/** Each call's deadline: a call the proxy loses ends as DEADLINE_EXCEEDED instead of hanging the run. */
const DEADLINE_MS = 5000
const SERVICE = '/bench/grpc-chaos'
/** Which instance does what: 0 serves, 1 answers UNAVAILABLE (draining), 2 is killed every second. */
const DRAINING = 1
const KILLED = 2

interface Outcome {
  readonly target: string
  readonly skipped?: string
  readonly kills?: number
  readonly ok?: number
  readonly notOk?: Map<number, number>
  readonly p50?: number
  readonly p99?: number
  /** Attempts the proxy made per call, or null when it cannot be told. */
  readonly attempts?: number | null
}

const zk = await startZooKeeper()
const admin = new ZkSession({ connect: zk.connectString, sessionTimeoutMs: 10_000, logger: silentLogger })
admin.start()
await admin.ensureParents(`${SERVICE}/x`)
await admin.create(SERVICE, Buffer.alloc(0), 'persistent').catch(() => {})
const ports = [await freePort(), await freePort(), await freePort()]
for (const [i, port] of ports.entries()) {
  await admin.create(`${SERVICE}/g${i}`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port, protocol: 'h2c' })), 'persistent')
}

console.log(
  `# gRPC chaos: ${CALLS} unary calls, ${CONCURRENCY} in flight on one channel; of 3 instances, #${DRAINING} answers UNAVAILABLE (draining), ` +
    `#${KILLED} is SIGKILLed every 1 s and restarted 300 ms later`,
)
const outcomes: Outcome[] = []
try {
  outcomes.push(await round('zoo-proxy'))
  if (has('nginx')) outcomes.push(await round('nginx grpc_pass'))
  else outcomes.push({ target: 'nginx grpc_pass', skipped: 'nginx is not installed' })
  const rows = outcomes.map((o) =>
    o.skipped !== undefined
      ? [o.target, `skipped: ${o.skipped}`, '-', '-', '-', '-', '-', '-']
      : [
          o.target,
          o.kills!,
          CALLS,
          `${((100 * o.ok!) / CALLS).toFixed(3)}%`,
          [...o.notOk!].map(([code, n]) => `${code}: ${n}`).join(', ') || '-',
          o.p50!,
          o.p99!,
          o.attempts === null || o.attempts === undefined ? '-' : o.attempts.toFixed(3),
        ],
  )
  console.log(table(['target', 'kills', 'calls', 'OK', 'not OK (status: calls)', 'p50 ms', 'p99 ms', 'attempts/call'], rows))
  const zoo = outcomes[0]!
  if (zoo.skipped !== undefined) console.log(`bar: 100% OK, at most 1.1 attempts per call: skipped: ${zoo.skipped}`)
  else {
    console.log(`bar: 100% OK: ${zoo.ok === CALLS ? 'PASS' : 'FAIL'} (${zoo.ok} of ${CALLS})`)
    console.log(`bar: at most 1.1 attempts per call: ${zoo.attempts !== null && zoo.attempts! <= 1.1 ? 'PASS' : 'FAIL'} (${zoo.attempts?.toFixed(3) ?? 'unknown'})`)
  }
} finally {
  admin.close()
  await zk.stop()
}
process.exit(0)

/** One target's run: its own instances and proxy, all stopped before it returns. */
async function round(target: 'zoo-proxy' | 'nginx grpc_pass'): Promise<Outcome> {
  const procs: (ChildProcess | null)[] = [null, null, null]
  const startInstance = async (i: number) => {
    procs[i] = (await spawnGrpcInstances([{ port: ports[i]!, unavailable: i === DRAINING }], null)).child
  }
  for (let i = 0; i < 3; i++) await startInstance(i)
  let stopProxy: () => Promise<void>
  let proxyPort: number
  let attemptsSoFar: () => Promise<number | null>
  if (target === 'zoo-proxy') {
    // A short ejection so the restarted instance comes back within the run, as bench:chaos does.
    const proxy = await spawnProxy(zk.dir, zk.connectString, { path: SERVICE, upstreamProtocol: 'h2c', strategy: 'round-robin', outlier: { baseEjectionMs: 1000 } })
    stopProxy = proxy.stop
    proxyPort = proxy.port
    attemptsSoFar = async () => {
      const byPort = await requestsByPort(proxy.adminPort)
      return ports.reduce((a, p) => a + (byPort[p] ?? 0), 0)
    }
  } else {
    const log = path.join(zk.dir, 'nginx-grpc-tried.log')
    const peer = await startNginxH2Proxy(path.join(zk.dir, 'nginx-grpc-chaos'), await freePort(), ports, null, { grpc: true, retryLog: log })
    stopProxy = () => stopChild(peer.child)
    proxyPort = peer.port
    writeFileSync(log, '')
    // One line a call: every server tried ("a, b"), or "-" when none was.
    attemptsSoFar = async () =>
      readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l !== '' && l !== '-')
        .reduce((a, l) => a + l.split(',').length, 0)
  }
  const refused = await h2Refusal(proxyPort, false)
  if (refused !== null) {
    await stopProxy()
    for (const p of procs) if (p) await stopChild(p)
    return { target, skipped: target === 'zoo-proxy' ? 'proxy has no h2 front' : refused }
  }
  const random = seededRandom(42)
  let kills = 0
  const restarts = new Set<NodeJS.Timeout>()
  const starting = new Set<Promise<void>>()
  const client = echoClient(proxyPort)
  let chaos: NodeJS.Timeout | undefined
  try {
    // Settle first: one call through, so the channel is connected before the clock starts.
    await echoOnce(client, 'warm', DEADLINE_MS)
    const before = await attemptsSoFar()
    chaos = setInterval(() => {
      const p = procs[KILLED]
      if (!p) return
      procs[KILLED] = null
      p.kill('SIGKILL')
      kills++
      const timer = setTimeout(() => {
        restarts.delete(timer)
        const started: Promise<void> = startInstance(KILLED).finally(() => starting.delete(started))
        starting.add(started)
      }, 300)
      restarts.add(timer)
    }, 1000)
    // (The seeded source only staggers the callers' first calls; the kills are on the clock.)
    const latencies: number[] = []
    const notOk = new Map<number, number>()
    let ok = 0
    let issued = 0
    const caller = async () => {
      await new Promise((r) => setTimeout(r, Math.floor(random() * 5)))
      while (issued < CALLS) {
        issued++
        const t0 = performance.now()
        const r = await echoOnce(client, 'hello', DEADLINE_MS)
        latencies.push(performance.now() - t0)
        if (r.code === 0) ok++
        else notOk.set(r.code, (notOk.get(r.code) ?? 0) + 1)
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, caller))
    clearInterval(chaos)
    // nginx writes its access log line as each call ends: every call has ended by now.
    const after = await attemptsSoFar()
    latencies.sort((a, b) => a - b)
    const at = (p: number) => Number(latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)]!.toFixed(2))
    return { target, kills, ok, notOk, p50: at(0.5), p99: at(0.99), attempts: before === null || after === null ? null : (after - before) / CALLS }
  } finally {
    clearInterval(chaos)
    client.close()
    for (const t of restarts) clearTimeout(t)
    await Promise.allSettled([...starting])
    await stopProxy()
    for (const [i, p] of procs.entries()) {
      if (p) await stopChild(p)
      procs[i] = null
    }
  }
}
