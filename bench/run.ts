// `npm run bench`: zoo-proxy measured side by side with direct, nginx, HAProxy and http-proxy, in
// one run, on the same upstreams, with the same load. Prints a table per scenario and load tool and
// writes its results to bench/local/ (git-ignored), or with --save to bench/results/, the
// committed latest.{json,md} and ratios.svg. `npm run bench -- --help` lists the options.
//
// --ab <git-ref>: the ref is built in a temporary git worktree (sharing this checkout's
// node_modules) and its zoo-proxy runs beside this build's in the same interleaved small-GET run;
// each rep's paired ratio (this build / the ref, req/s and CPU per request) and their median are
// printed. Every change on the request path quotes it.
//
// The small-GET scenario measures zoo-proxy on both parser paths (Node's llhttp binding, and the
// portable parser: ZOO_PROXY_PARSER=portable), and with --node (or ZOO_PROXY_BENCH_NODE) zoo-proxy
// and the Node floor again under each Node binary given: is a newer Node a runtime below today's floor?
//
// Pinning (docs/performance.md): the proxy under test alone on one CPU (the last, or
// --proxy-cpu); this process (the autocannon load), wrk, the upstreams and ZooKeeper on the others.
// Targets are interleaved A B C, C B A.
//
// HTTP/2 and gRPC (issue 26 §5, issue 27): `--scenarios h2` runs h2c, h2 over TLS and h2c both
// ways with h2load (-c100 -m10) against zoo-proxy, nginx, HAProxy and the HTTP/2 Node floor, and
// prints the issue's floors as pass/fail lines; `--scenarios grpc` a unary gRPC call against
// zoo-proxy, nginx grpc_pass and HAProxy toward grpc-js instances. A zoo-proxy without an HTTP/2
// front gets a "skipped" row, not a failed run.

import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startZooKeeper, freePort, freePorts } from '../scripts/zookeeper.js'
import { ZkSession } from '../lib/discovery/zk-session.js'
import { silentLogger } from '../lib/log.js'
import { MALLOC_TUNING } from '../lib/ops/tuning.js'
import { CLI, cannon, cpuTimes, spawnUpstreams, stopChild, table, track } from './common.js'
import type { LoadResult } from './common.js'
import { childPids, has, pinned, startHaproxy, startHttpProxy, startNginxProxy, startNginxUpstreams, startNodeFloor } from './peers.js'
import type { Peer } from './peers.js'
import { ratioChart } from './chart.js'
import { H2_CLIENTS, H2_STREAMS, h2Refusal, runH2load, spawnGrpcInstances, startH2Floor, startHaproxyH2, startNginxH2cUpstreams, startNginxH2Proxy } from './h2-peers.js'
import type { CertFiles } from './h2-peers.js'
import { ECHO_PATH, echoClient, echoOnce, encodeMsg, grpcFrame } from './grpc-bench-proto.js'

const USAGE = `npm run bench -- [options]

  --scenarios <list>   get,post64k,big,idle1000,rate,many,https,h2,grpc,workers (default: all);
                       h2 is h2c, h2-tls and h2c-upstream (each may be named alone); h2 and
                       grpc need h2load (Debian's nghttp2-client)
  --tools <list>       autocannon,wrk (wrk when installed; default: both)
  --reps <n>           reps per target (default 2; with 1 the spread is n/a)
  --duration <s>       seconds per rep (default 5, --quick 3)
  --warmup <s>         seconds of warm-up per target (default 2, --quick 1)
  --quick              shorter reps
  --with-peers         as root, install wrk, nginx-light, haproxy and nghttp2-client with apt first
  --proxy-cpu <n>      the CPU the proxy under test is pinned to (default: the last)
  --untuned            glibc's malloc defaults instead of MALLOC_TRIM_THRESHOLD_
  --node <bin>[,<bin>] also run zoo-proxy and the Node floor under these Node binaries (small GET)
  --ab <git-ref>       build the ref in a temporary worktree and compare it rep by rep with this build
  --save               write bench/results/latest.{json,md} and ratios.svg (committed); without it,
                       results go to bench/local/ (git-ignored)
  --help               this text
`
const options = {
  help: { type: 'boolean', short: 'h', default: false },
  save: { type: 'boolean', default: false },
  'with-peers': { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    reps: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    scenarios: { type: 'string' },
    tools: { type: 'string' },
    'proxy-cpu': { type: 'string' },
    untuned: { type: 'boolean', default: false },
    node: { type: 'string', multiple: true },
    ab: { type: 'string' },
} as const
let parsed: ReturnType<typeof parseArgs<{ options: typeof options }>>
try {
  parsed = parseArgs({ options })
} catch (err) {
  // A mistyped option is a usage error: its message and the usage, no stack trace.
  process.stderr.write(`${(err as Error).message}\n\n${USAGE}`)
  process.exit(2)
}
const opt = parsed.values
if (opt.help) {
  process.stdout.write(USAGE)
  process.exit(0)
}
/** Other Node binaries to run zoo-proxy and the floor under (small GET), each with its version. */
const otherNodes = (opt.node ?? (process.env.ZOO_PROXY_BENCH_NODE ?? '').split(','))
  .flatMap((n) => n.split(','))
  .filter((n) => n !== '')
  .map((bin) => ({ bin, label: `Node ${execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim()}` }))
const here = path.dirname(fileURLToPath(import.meta.url))
// README "Tuning": every process measured here (the Node baselines too) runs with glibc's heap
// trimming raised, as the Docker image runs zoo-proxy; --untuned measures glibc's default.
if (opt.untuned) delete process.env.MALLOC_TRIM_THRESHOLD_
else process.env.MALLOC_TRIM_THRESHOLD_ ??= MALLOC_TUNING.MALLOC_TRIM_THRESHOLD_
const tuning = process.env.MALLOC_TRIM_THRESHOLD_ === undefined ? 'glibc malloc defaults' : `MALLOC_TRIM_THRESHOLD_=${process.env.MALLOC_TRIM_THRESHOLD_}`
const reps = Number(opt.reps ?? 2)
const durationS = Number(opt.duration ?? (opt.quick ? 3 : 5))
const warmupS = Number(opt.warmup ?? (opt.quick ? 1 : 2))

if (opt['with-peers'] && process.getuid?.() === 0 && !(has('wrk') && has('nginx') && has('haproxy') && has('h2load'))) {
  console.log('# installing wrk, nginx-light, haproxy and nghttp2-client with apt...')
  execFileSync('sh', ['-c', 'apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq wrk nginx-light haproxy nghttp2-client >/dev/null'], { stdio: 'inherit' })
}
const tools = (opt.tools ?? 'autocannon,wrk').split(',').filter((t) => t === 'autocannon' || (t === 'wrk' && has('wrk')))
const haveNginx = has('nginx')
const haveHaproxy = has('haproxy')
const multiCore = os.cpus().length >= 2 && has('taskset')
// The proxy gets the last CPU by default: on these VMs CPU 0 measured slower for the same process
// (it takes more of the host's interrupts), which would flatter nobody but penalise the proxy.
const PROXY_CPU = multiCore ? (opt['proxy-cpu'] ?? String(os.cpus().length - 1)) : null
const LOAD_CPU = multiCore ? Array.from({ length: os.cpus().length }, (_, i) => i).filter((i) => String(i) !== PROXY_CPU).join(',') : null
if (LOAD_CPU !== null) execFileSync('taskset', ['-a', '-p', '-c', LOAD_CPU, String(process.pid)], { stdio: 'ignore' })
/** Where wrk runs; the workers scenario unpins it. */
let loadCpu: string | null = LOAD_CPU

interface Scenario {
  readonly name: string
  readonly title: string
  readonly path: string
  readonly method: 'GET' | 'POST'
  readonly body?: Buffer
  readonly connections: number
  readonly idle?: number
  readonly many?: boolean
  /**
   * Below saturation (wrk only): each connection waits a random 0 to 2 x thinkMs after an answer.
   * Random, so the connections do not fire in step; autocannon's fixed rates send each second's
   * quota in a burst, which measures queueing behind the burst instead.
   */
  readonly thinkMs?: number
  readonly workers?: boolean
  /** Over HTTPS: zoo-proxy and nginx with the same certificate (made with openssl for the run). */
  readonly https?: boolean
  /**
   * HTTP/2 toward the client, with h2load: `h2c` (prior knowledge), `tls` (ALPN h2, the run's
   * certificate), `h2c-upstream` (h2c to the client and to the instances), `grpc` (unary calls).
   */
  readonly h2?: 'h2c' | 'tls' | 'h2c-upstream' | 'grpc'
  /** A name that selects this scenario with others (`--scenarios h2`). */
  readonly group?: string
}
const SCENARIOS: Scenario[] = [
  { name: 'get', title: 'small GET, keep-alive, 50 connections', path: '/', method: 'GET', connections: 50 },
  { name: 'post64k', title: 'POST with a 64 KiB body, 50 connections', path: '/', method: 'POST', body: Buffer.alloc(64 * 1024, 'p'), connections: 50 },
  { name: 'big', title: '1 MiB streamed response, 10 connections', path: '/big', method: 'GET', connections: 10 },
  { name: 'idle1000', title: '1,000 idle keep-alive connections plus 50 busy ones', path: '/', method: 'GET', connections: 50, idle: 1000 },
  // Every other scenario saturates the proxy, so its p99 is mostly queueing behind a busy core;
  // this one asks what a proxy adds to a request when it is not the bottleneck.
  { name: 'rate', title: 'latency below saturation: small GET, 50 connections, each waiting 0-20 ms between requests', path: '/', method: 'GET', connections: 50, thinkMs: 10 },
  { name: 'many', title: 'discovery size: 100 registered instances against 3 (small GET, 50 connections)', path: '/', method: 'GET', connections: 50, many: true },
  { name: 'https', title: 'small GET over HTTPS (keep-alive, the same certificate for both), 50 connections', path: '/', method: 'GET', connections: 50, https: true },
  { name: 'h2c', group: 'h2', title: `HTTP/2 small GET, h2c with prior knowledge, h2load -c${H2_CLIENTS} -m${H2_STREAMS}, HTTP/1.1 to the instances`, path: '/', method: 'GET', connections: H2_CLIENTS, h2: 'h2c' },
  { name: 'h2-tls', group: 'h2', title: `HTTP/2 small GET over TLS (ALPN h2, the same certificate for all), h2load -c${H2_CLIENTS} -m${H2_STREAMS}, HTTP/1.1 to the instances`, path: '/', method: 'GET', connections: H2_CLIENTS, h2: 'tls' },
  { name: 'h2c-upstream', group: 'h2', title: `HTTP/2 small GET, h2c to the proxy and h2c to nginx instances, h2load -c${H2_CLIENTS} -m${H2_STREAMS}`, path: '/', method: 'GET', connections: H2_CLIENTS, h2: 'h2c-upstream' },
  { name: 'grpc', group: 'grpc', title: `gRPC unary call (a 7-byte protobuf message each way) to 3 grpc-js instances, h2c, h2load -c${H2_CLIENTS} -m${H2_STREAMS}`, path: ECHO_PATH, method: 'POST', connections: H2_CLIENTS, h2: 'grpc' },
  // Last: it unpins everything for the scenarios after it.
  { name: 'workers', title: '1 worker against 2 (node:cluster), small GET, 50 connections, nothing pinned', path: '/', method: 'GET', connections: 50, workers: true },
]
const wanted = new Set((opt.scenarios ?? SCENARIOS.map((s) => s.name).join(',')).split(','))
const scenarios = SCENARIOS.filter((s) => wanted.has(s.name) || (s.group !== undefined && wanted.has(s.group)))

// ---- the fixed parts: ZooKeeper, upstreams, registrations --------------------------------------
const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-bench-'))
// Removed however the run ends (an error or Ctrl-C included), as is ZooKeeper's folder below.
process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
// nginx workers run as nobody: they must be able to read the static file in here.
chmodSync(dir, 0o755)
const zk = await startZooKeeper()
process.once('exit', () => rmSync(zk.dir, { recursive: true, force: true }))
const upstreamPorts = await freePorts(103)
const three = upstreamPorts.slice(0, 3)
const hundred = upstreamPorts.slice(3)
let upstreamKind: string
let upstreamPeer: Peer | null = null
if (haveNginx) {
  upstreamPeer = await startNginxUpstreams(path.join(dir, 'upstreams'), upstreamPorts, LOAD_CPU)
  upstreamKind = 'nginx (1 worker, `return 200`, a static 1 MiB file)'
} else {
  const ups = await spawnUpstreams(upstreamPorts.map((port, i) => ({ name: `u${i}`, port })))
  if (LOAD_CPU !== null) execFileSync('taskset', ['-a', '-p', '-c', LOAD_CPU, String(ups.child.pid)], { stdio: 'ignore' })
  upstreamKind = 'a tiny Node server (one process)'
}
const admin = new ZkSession({ connect: zk.connectString, sessionTimeoutMs: 10_000, logger: silentLogger })
admin.start()
for (const [svc, ports] of [['/bench/three', three], ['/bench/hundred', hundred]] as const) {
  await admin.ensureParents(`${svc}/x`)
  await admin.create(svc, Buffer.alloc(0), 'persistent').catch(() => {})
  for (const p of ports) await admin.create(`${svc}/i-${p}`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: p })), 'persistent')
}
/** Registers instances spoken to over h2c (the znode says so: `"protocol": "h2c"`). */
async function registerH2c(svc: string, ports: readonly number[]): Promise<void> {
  await admin.ensureParents(`${svc}/x`)
  await admin.create(svc, Buffer.alloc(0), 'persistent').catch(() => {})
  for (const p of ports) await admin.create(`${svc}/i-${p}`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: p, protocol: 'h2c' })), 'persistent')
}
// The h2c-upstream variant's instances (nginx h2c) and the gRPC scenario's (grpc-js), only when wanted.
let h2cUpstreams: { ports: number[]; peer: Peer } | null = null
if (haveNginx && scenarios.some((s) => s.h2 === 'h2c-upstream')) {
  const ports = await freePorts(3)
  h2cUpstreams = { ports, peer: await startNginxH2cUpstreams(path.join(dir, 'h2c-upstreams'), ports, LOAD_CPU) }
  await registerH2c('/bench/three-h2c', ports)
}
let grpcInstances: { ports: number[]; child: ChildProcess } | null = null
if (scenarios.some((s) => s.h2 === 'grpc')) {
  grpcInstances = await spawnGrpcInstances([{}, {}, {}], LOAD_CPU)
  await registerH2c('/bench/grpc', grpcInstances.ports)
}
/** The run's self-signed certificate for 127.0.0.1 (https, h2-tls), made with openssl once. */
let runCert: CertFiles | null = null
function certFiles(): CertFiles {
  if (runCert !== null) return runCert
  const cert = path.join(dir, 'bench.crt')
  const key = path.join(dir, 'bench.key')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  runCert = { cert, key }
  return runCert
}

/** How a zoo-proxy target differs from the plain one: the Node it runs on, its parser path, its build. */
interface Variant {
  readonly node?: { bin: string; label: string }
  readonly portable?: boolean
  /** Another build's CLI (--ab), with the name its rows carry. */
  readonly build?: { cli: string; label: string }
  /** More fields of the service's config (HTTP/2 scenarios), and the name its rows carry. */
  readonly service?: Readonly<Record<string, unknown>>
  readonly name?: string
  /** Ready once its instances are listed, without a GET through it (gRPC instances answer no GET). */
  readonly noProbe?: boolean
}

/** --ab: the ref checked out in a temporary worktree and compiled; removed when the run ends. */
function buildRef(ref: string): { cli: string; label: string } {
  const root = path.join(here, '..', '..')
  const tree = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-ab-'))
  const sha = execFileSync('git', ['-C', root, 'rev-parse', '--short', ref], { encoding: 'utf8' }).trim()
  execFileSync('git', ['-C', root, 'worktree', 'add', '--detach', '--force', tree, sha], { stdio: 'ignore' })
  process.once('exit', () => {
    try {
      execFileSync('git', ['-C', root, 'worktree', 'remove', '--force', tree], { stdio: 'ignore' })
    } catch {
      // Already gone.
    }
  })
  // The ref's own dependencies when its lock differs from this tree's (a dependency added or
  // dropped between the two builds); otherwise this tree's, which saves a minute of npm ci.
  const sameLock = readFileSync(path.join(tree, 'package-lock.json'), 'utf8') === readFileSync(path.join(root, 'package-lock.json'), 'utf8')
  if (sameLock) symlinkSync(path.join(root, 'node_modules'), path.join(tree, 'node_modules'))
  else {
    execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: tree, stdio: 'ignore' })
    if (existsSync(path.join(tree, 'patches'))) execFileSync('npx', ['patch-package'], { cwd: tree, stdio: 'ignore' })
  }
  console.log(`# --ab: building ${ref} (${sha}) in ${tree}${sameLock ? '' : ' (with its own dependencies)'}`)
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(tree, 'tsconfig.json')], { stdio: 'inherit' })
  return { cli: path.join(tree, 'dist', 'lib', 'cli.js'), label: `zoo-proxy (${ref})` }
}
const abBuild = opt.ab === undefined ? null : buildRef(opt.ab)

/** `access`: with the access log on (one JSON line a request, to stdout, which goes to /dev/null here). */
async function startZooProxy(servicePath: string, count: number, workers = 1, cpu: string | null = PROXY_CPU, access = false, tls?: { cert: string; key: string }, variant: Variant = {}): Promise<Peer> {
  const port = await freePort()
  const adminPort = await freePort()
  const file = path.join(dir, `zoo-proxy-${port}.json`)
  writeFileSync(
    file,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      admin: `127.0.0.1:${adminPort}`,
      zookeeper: { connect: zk.connectString },
      log: { level: 'warn', access },
      ...(tls === undefined ? {} : { tls }),
      workers,
      services: [{ name: 'bench', path: servicePath, strategy: 'round-robin', ...variant.service }],
    }),
  )
  // Several workers need every CPU: nothing is pinned for them.
  const [cmd, args] = pinned(workers > 1 ? null : cpu, variant.node?.bin ?? process.execPath, [variant.build?.cli ?? CLI, '--config', file])
  const env = { ...process.env }
  if (variant.portable === true) env.ZOO_PROXY_PARSER = 'portable'
  else delete env.ZOO_PROXY_PARSER
  // (stdout, the log, is dropped: the portable path's warn line goes nowhere.)
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], env }))
  const deadline = Date.now() + 20_000
  for (;;) {
    const n = await fetch(`http://127.0.0.1:${adminPort}/upstreams`)
      .then((r) => r.json() as Promise<{ ready: boolean; services: { bench: { instances: unknown[] } } }>)
      .then((b) => (b.ready ? b.services.bench.instances.length : 0), () => 0)
    // (Over HTTPS, ready is enough: fetch would refuse the run's own certificate.)
    const serving = n === count && (tls !== undefined || variant.noProbe === true || (await fetch(`http://127.0.0.1:${port}/`).then((r) => (r.body?.cancel(), r.status === 200), () => false)))
    if (serving) break
    if (Date.now() > deadline) throw new Error('zoo-proxy not ready')
    await new Promise((r) => setTimeout(r, 100))
  }
  const name =
    variant.name !== undefined
      ? variant.name
      : variant.build !== undefined
      ? variant.build.label
      : variant.node !== undefined
      ? `zoo-proxy (${variant.node.label})`
      : variant.portable === true
        ? 'zoo-proxy (portable parser)'
        : workers > 1
          ? `zoo-proxy (${workers} workers)`
          : access
            ? 'zoo-proxy (access log)'
            : tls !== undefined
              ? 'zoo-proxy (https)'
              : count === 3
                ? 'zoo-proxy'
                : `zoo-proxy (${count} instances)`
  return { name, port, ...(tls === undefined ? {} : { https: true }), child, pids: () => (workers > 1 ? [child.pid!, ...childPids(child.pid!)] : [child.pid!]) }
}

// ---- measuring one target ------------------------------------------------------------------------
interface Sample extends LoadResult {
  readonly cpuUsPerReq: number | null
  /** The kernel's share of it (system time): the loopback TCP stack, mostly. */
  readonly sysUsPerReq: number | null
  readonly rssMb: number | null
}

function peakRssMb(pids: number[]): number | null {
  let kb = 0
  for (const pid of pids) {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      kb += m ? Number(m[1]) : 0
    } catch {
      return null
    }
  }
  return kb / 1024
}

function wrkScript(s: Scenario): string {
  const file = path.join(dir, `${s.name}.lua`)
  const body = s.body ? `wrk.body = string.rep("p", ${s.body.length})\n` : ''
  const think = s.thinkMs ? `math.randomseed(os.time())\ndelay = function() return math.random(0, ${2 * s.thinkMs}) end\n` : ''
  writeFileSync(
    file,
    `wrk.method = "${s.method}"
${body}${think}done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("JSON{\\"requests\\":%d,\\"durationUs\\":%d,\\"p50\\":%d,\\"p99\\":%d,\\"p999\\":%d,\\"errors\\":%d,\\"non2xx\\":%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.timeout, e.status))
end
`,
  )
  return file
}

function runWrk(url: string, s: Scenario, seconds: number): Promise<LoadResult> {
  const [cmd, args] = pinned(loadCpu, 'wrk', ['-t1', `-c${s.connections}`, `-d${seconds}s`, '-s', wrkScript(s), url])
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.once('exit', () => {
      const m = /JSON(\{.*\})/.exec(out)
      if (!m) return reject(new Error(`wrk said: ${out}`))
      const r = JSON.parse(m[1]!) as { requests: number; durationUs: number; p50: number; p99: number; p999: number; errors: number; non2xx: number }
      resolve({ rps: r.requests / (r.durationUs / 1e6), p50: r.p50 / 1000, p99: r.p99 / 1000, p999: r.p999 / 1000, errors: r.errors, non2xx: r.non2xx, requests: r.requests })
    })
  })
}

/** Opens `n` keep-alive connections, each after one answered request (their answers are read and dropped). */
async function idleConnections(port: number, n: number): Promise<net.Socket[]> {
  const socks: net.Socket[] = []
  for (let i = 0; i < n; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, () =>
        new Promise<void>((resolve) => {
          const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: bench\r\n\r\n'))
          s.once('data', () => resolve())
          s.once('error', () => resolve())
          s.on('data', () => {})
          socks.push(s)
        }),
      ),
    )
  }
  return socks
}

async function measure(peer: Peer, s: Scenario, tool: string): Promise<Sample> {
  const url = `${peer.https ? 'https' : 'http'}://127.0.0.1:${peer.port}${s.path}`
  if (tool === 'h2load') return measureH2(peer, s, url)
  const run = (seconds: number) =>
    tool === 'wrk' ? runWrk(url, s, seconds) : cannon(url, { connections: s.connections, durationS: seconds, method: s.method, body: s.body })
  const idle = s.idle ? await idleConnections(peer.port, s.idle) : []
  // zoo-proxy (like node:http) closes a connection idle for 5 s, nginx after 75 s: one request on
  // each idle connection every 2 s keeps them all open through the run, for every target alike,
  // spread evenly (1% of them every 20 ms) so that they never arrive as one burst.
  let touches = 0
  let next = 0
  const perTick = Math.ceil(idle.length / 100)
  const touch =
    idle.length === 0
      ? null
      : setInterval(() => {
          for (let k = 0; k < perTick; k++) {
            const sock = idle[next++ % idle.length]!
            if (!sock.destroyed) sock.write('GET / HTTP/1.1\r\nHost: bench\r\n\r\n')
          }
          touches += perTick
        }, 20)
  await run(warmupS)
  const pids = peer.pids()
  const cpu = () => pids.map(cpuTimes).reduce((a, t) => ({ user: a.user + t.user, sys: a.sys + t.sys }), { user: 0, sys: 0 })
  const before = cpu()
  const touchedBefore = touches
  const r = await run(durationS)
  const after = cpu()
  // The keep-open requests cost the proxy CPU too: they count in the CPU per request.
  const served = r.requests + touches - touchedBefore
  if (touch !== null) clearInterval(touch)
  for (const sock of idle) sock.destroy()
  const direct = peer.name === 'direct'
  return {
    ...r,
    cpuUsPerReq: direct ? null : ((after.user + after.sys - before.user - before.sys) * 1e6) / Math.max(1, served),
    sysUsPerReq: direct ? null : ((after.sys - before.sys) * 1e6) / Math.max(1, served),
    rssMb: direct ? null : peakRssMb(pids),
  }
}

/** Requests in an HTTP/2 warm-up: a few seconds at the rates measured here, enough to size the run after it. */
const H2_WARMUP_REQUESTS = 20_000

/**
 * One h2load sample: a warm-up of H2_WARMUP_REQUESTS, then as many requests as the warm-up's rate
 * serves in --duration seconds (bounded: at least the warm-up's count, at most 10 million).
 */
async function measureH2(peer: Peer, s: Scenario, url: string): Promise<Sample> {
  const run = (requests: number) =>
    runH2load({ url, requests, cpus: loadCpu, logFile: path.join(dir, 'h2load.log'), ...(s.h2 === 'grpc' ? { dataFile: grpcBodyFile(), headers: GRPC_HEADERS } : {}) })
  const warm = await run(H2_WARMUP_REQUESTS)
  const pids = peer.pids()
  const cpu = () => pids.map(cpuTimes).reduce((a, t) => ({ user: a.user + t.user, sys: a.sys + t.sys }), { user: 0, sys: 0 })
  const before = cpu()
  const r = await run(Math.min(10_000_000, Math.max(H2_WARMUP_REQUESTS, Math.round(warm.rps * durationS))))
  const after = cpu()
  const served = Math.max(1, r.requests)
  return {
    ...r,
    cpuUsPerReq: ((after.user + after.sys - before.user - before.sys) * 1e6) / served,
    sysUsPerReq: ((after.sys - before.sys) * 1e6) / served,
    rssMb: peakRssMb(pids),
  }
}

// ---- the run ---------------------------------------------------------------------------------------
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
interface Row {
  target: string
  samples: Sample[]
  /** Why this target was not measured (a zoo-proxy without an HTTP/2 front). */
  skipped?: string
}
/** What h2load sends for a gRPC call: gRPC's content type, and `te: trailers`, which gRPC requires. */
const GRPC_HEADERS = ['content-type: application/grpc', 'te: trailers']
/** The Echo request as h2load posts it: one framed protobuf message. */
function grpcBodyFile(): string {
  const file = path.join(dir, 'grpc-echo.bin')
  if (!existsSync(file)) writeFileSync(file, grpcFrame(encodeMsg('hello')))
  return file
}

/** The targets of an HTTP/2 or gRPC scenario; each that does not answer over HTTP/2 is marked skipped, with why. */
async function h2Targets(s: Scenario, skipped: Map<Peer, string>): Promise<Peer[]> {
  const targets: Peer[] = []
  const own = (peer: string) => path.join(dir, `${peer}-${s.name}`)
  if (s.h2 === 'grpc') {
    const ports = grpcInstances!.ports
    targets.push(await startZooProxy('/bench/grpc', 3, 1, PROXY_CPU, false, undefined, { name: 'zoo-proxy', noProbe: true }))
    if (haveNginx) targets.push(await startNginxH2Proxy(own('nginx'), await freePort(), ports, PROXY_CPU, { grpc: true }))
    if (haveHaproxy) targets.push(await startHaproxyH2(own('haproxy'), await freePort(), ports, PROXY_CPU, { h2Servers: true, name: 'haproxy (h2 to the instances)' }))
  } else if (s.h2 === 'h2c-upstream') {
    // nginx cannot proxy_pass over HTTP/2, so HAProxy is the peer here (nginx is the instances).
    targets.push(await startZooProxy('/bench/three-h2c', 3, 1, PROXY_CPU, false, undefined, { name: 'zoo-proxy' }))
    if (haveHaproxy) targets.push(await startHaproxyH2(own('haproxy'), await freePort(), h2cUpstreams!.ports, PROXY_CPU, { h2Servers: true, name: 'haproxy (h2c to the instances)' }))
    targets.push(await startH2Floor(await freePort(), PROXY_CPU))
  } else {
    const tls = s.h2 === 'tls' ? certFiles() : undefined
    targets.push(await startZooProxy('/bench/three', 3, 1, PROXY_CPU, false, tls, { name: 'zoo-proxy' }))
    if (haveNginx) targets.push(await startNginxH2Proxy(own('nginx'), await freePort(), three, PROXY_CPU, tls === undefined ? {} : { tls }))
    if (haveHaproxy) targets.push(await startHaproxyH2(own('haproxy'), await freePort(), three, PROXY_CPU, tls === undefined ? {} : { tls }))
    targets.push(await startH2Floor(await freePort(), PROXY_CPU, tls))
  }
  for (const t of targets) {
    const refused = await h2Refusal(t.port, t.https === true)
    if (refused !== null) {
      // zoo-proxy before its HTTP/2 front (issue 26 §2) answers the preface as a bad HTTP/1.1 request.
      skipped.set(t, t.name.startsWith('zoo-proxy') ? 'proxy has no h2 front' : refused)
      continue
    }
    if (s.h2 === 'grpc') {
      const client = echoClient(t.port)
      const r = await echoOnce(client, 'hello', 5000)
      client.close()
      if (r.code !== 0) skipped.set(t, `a gRPC call through it ended with status ${r.code} (${r.details})`)
    }
  }
  return targets
}

/** Issue 26 §5's floors, as pass/fail lines: at least 0.5 x nginx's req/s, CPU within 1.5 x the HTTP/2 Node floor. */
function printFloors(s: Scenario, rows: Row[]): void {
  if (s.h2 === undefined || s.h2 === 'grpc') return
  const zoo = rows.find((r) => r.target === 'zoo-proxy')
  const nginx = rows.find((r) => r.target.startsWith('nginx') && r.skipped === undefined)
  const floor = rows.find((r) => r.target.startsWith('node floor') && r.skipped === undefined)
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL')
  const lines: string[] = []
  const rpsFloor = 'floor: zoo-proxy req/s >= 0.5 x nginx:'
  const cpuFloor = 'floor: zoo-proxy CPU µs/req <= 1.5 x the HTTP/2 Node floor:'
  if (zoo === undefined || zoo.skipped !== undefined) {
    const why = `skipped: ${zoo?.skipped ?? 'no zoo-proxy row'}`
    lines.push(`${rpsFloor} ${why}`, `${cpuFloor} ${why}`)
  } else {
    const z = summary(zoo)
    if (nginx === undefined) lines.push(`${rpsFloor} n/a (no nginx row in this scenario)`)
    else {
      const n = summary(nginx)
      lines.push(`${rpsFloor} ${verdict(z.rps >= 0.5 * n.rps)} (${(z.rps / n.rps).toFixed(2)} x: ${Math.round(z.rps)} against ${Math.round(n.rps)} req/s)`)
    }
    const f = floor === undefined ? null : summary(floor)
    if (f === null || f.cpu === null || z.cpu === null) lines.push(`${cpuFloor} n/a (no floor row)`)
    else {
      const best = z.cpuBest !== null && f.cpuBest !== null ? `; best reps ${(z.cpuBest / f.cpuBest).toFixed(2)} x` : ''
      lines.push(`${cpuFloor} ${verdict(z.cpu <= 1.5 * f.cpu)} (${(z.cpu / f.cpu).toFixed(2)} x: ${z.cpu.toFixed(1)} against ${f.cpu.toFixed(1)} µs${best})`)
    }
  }
  console.log(lines.join('\n'))
  markdown.push(...lines.map((l) => `- ${l}`), '')
}
const results: Record<string, Record<string, Row[]>> = {}
const markdown: string[] = []
const started = new Date()
console.log(
  `# zoo-proxy benchmark, ${started.toISOString()}: ${os.cpus().length} x ${os.cpus()[0]?.model ?? '?'}, Node ${process.version}, ` +
    `${reps} reps x ${durationS} s (after ${warmupS} s warm-up), upstreams: ${upstreamKind}, ${tuning}, pinning: ${multiCore ? `proxy on CPU ${PROXY_CPU}, load + upstreams on CPU ${LOAD_CPU}` : 'none'}`,
)

for (const s of scenarios) {
  // wrk only below saturation and over HTTPS (autocannon refuses the run's self-signed certificate).
  const scenarioTools = s.h2 !== undefined ? (has('h2load') ? ['h2load'] : []) : s.thinkMs === undefined && !s.https ? tools : tools.filter((t) => t === 'wrk')
  if (scenarioTools.length === 0 && s.h2 !== undefined) {
    console.log(`\n## ${s.name}: skipped (it needs h2load, Debian's nghttp2-client; --with-peers installs it)`)
    continue
  }
  if (s.h2 === 'h2c-upstream' && h2cUpstreams === null) {
    console.log(`\n## ${s.name}: skipped (its h2c instances are nginx, which is not installed)`)
    continue
  }
  if (scenarioTools.length === 0) {
    console.log(`\n## ${s.name}: skipped (it needs wrk; --with-peers installs it)`)
    continue
  }
  const targets: Peer[] = []
  const skipped = new Map<Peer, string>()
  if (s.h2 !== undefined) {
    targets.push(...(await h2Targets(s, skipped)))
  } else if (s.workers) {
    // Two workers need both CPUs, so this scenario pins nothing, the load included.
    loadCpu = null
    if (multiCore) execFileSync('taskset', ['-a', '-p', '-c', `0-${os.cpus().length - 1}`, String(process.pid)], { stdio: 'ignore' })
    targets.push(await startZooProxy('/bench/three', 3, 1, null), await startZooProxy('/bench/three', 3, 2, null))
  } else if (s.https) {
    // One self-signed certificate for both, made for this run.
    const { cert, key } = certFiles()
    targets.push(await startZooProxy('/bench/three', 3, 1, PROXY_CPU, false, { cert, key }))
    if (haveNginx) targets.push(await startNginxProxy(path.join(dir, `nginx-${s.name}`), await freePort(), three, PROXY_CPU, { cert, key }))
  } else if (s.many) {
    targets.push(await startZooProxy('/bench/three', 3), await startZooProxy('/bench/hundred', 100))
  } else {
    targets.push({ name: 'direct', port: three[0]!, child: upstreamPeer?.child ?? process as never, pids: () => [] })
    targets.push(await startZooProxy('/bench/three', 3))
    if (haveNginx) targets.push(await startNginxProxy(path.join(dir, `nginx-${s.name}`), await freePort(), three, PROXY_CPU))
    if (haveHaproxy) targets.push(await startHaproxy(path.join(dir, `haproxy-${s.name}`), await freePort(), three, PROXY_CPU))
    targets.push(await startHttpProxy(await freePort(), three, PROXY_CPU))
    // What Node's socket I/O alone costs a small GET here: the part of zoo-proxy's CPU no code of
    // ours can remove (the floor answers nothing but the small GETs of this scenario).
    if (s.name === 'get') targets.push(await startNodeFloor(await freePort(), three, PROXY_CPU))
    // What the access log costs (log.access: true, issue 13).
    if (s.name === 'get') targets.push(await startZooProxy('/bench/three', 3, 1, PROXY_CPU, true))
    // The portable parser path (issue 15), and each other Node line with its own floor beside it.
    if (s.name === 'get' && abBuild !== null) targets.push(await startZooProxy('/bench/three', 3, 1, PROXY_CPU, false, undefined, { build: abBuild }))
    if (s.name === 'get') {
      targets.push(await startZooProxy('/bench/three', 3, 1, PROXY_CPU, false, undefined, { portable: true }))
      for (const node of otherNodes) {
        targets.push(await startZooProxy('/bench/three', 3, 1, PROXY_CPU, false, undefined, { node }))
        targets.push(await startNodeFloor(await freePort(), three, PROXY_CPU, node))
      }
    }
  }
  results[s.name] = {}
  for (const tool of scenarioTools) {
    const rows: Row[] = targets.map((t) => ({ target: t.name, samples: [], ...(skipped.has(t) ? { skipped: skipped.get(t)! } : {}) }))
    for (let rep = 0; rep < reps; rep++) {
      const order = rep % 2 === 0 ? targets.map((_, i) => i) : targets.map((_, i) => targets.length - 1 - i)
      for (const i of order) if (rows[i]!.skipped === undefined) rows[i]!.samples.push(await measure(targets[i]!, s, tool))
    }
    results[s.name]![tool] = rows
    printTable(s, tool, rows)
    printFloors(s, rows)
    if (abBuild !== null) printPaired(s, tool, rows, abBuild.label)
  }
  for (const t of targets) if (t.name !== 'direct') await stopChild(t.child)
}

function summary(row: Row) {
  const rps = row.samples.map((x) => x.rps)
  const med = median(rps)
  const cpu = row.samples.map((x) => x.cpuUsPerReq).filter((x): x is number => x !== null)
  const sys = row.samples.map((x) => x.sysUsPerReq).filter((x): x is number => x !== null)
  const rss = row.samples.map((x) => x.rssMb).filter((x): x is number => x !== null)
  return {
    rps: med,
    spreadPct: med > 0 ? ((Math.max(...rps) - Math.min(...rps)) / med) * 100 : 0,
    p50: median(row.samples.map((x) => x.p50)),
    p99: median(row.samples.map((x) => x.p99)),
    p999: median(row.samples.map((x) => x.p999)),
    errors: row.samples.reduce((a, x) => a + x.errors + x.non2xx, 0),
    cpu: cpu.length ? median(cpu) : null,
    /** The least disturbed figure on a shared VM: a noisy neighbour only ever adds CPU time. */
    cpuBest: cpu.length ? Math.min(...cpu) : null,
    sys: sys.length ? median(sys) : null,
    rss: rss.length ? Math.max(...rss) : null,
  }
}

/** --ab: this build against the ref, rep by rep (each pair measured back to back), and the medians. */
function printPaired(s: Scenario, tool: string, rows: Row[], refLabel: string): void {
  const a = rows.find((r) => r.target === 'zoo-proxy')
  const b = rows.find((r) => r.target === refLabel)
  if (a === undefined || b === undefined) return
  const pairs = a.samples.map((x, i) => {
    const y = b.samples[i]!
    return { rps: x.rps / y.rps, cpu: x.cpuUsPerReq !== null && y.cpuUsPerReq !== null ? x.cpuUsPerReq / y.cpuUsPerReq : null }
  })
  const lines = pairs.map((p, i) => [String(i + 1), p.rps.toFixed(3), p.cpu === null ? '-' : p.cpu.toFixed(3)])
  const cpus = pairs.map((p) => p.cpu).filter((x): x is number => x !== null)
  lines.push(['median', median(pairs.map((p) => p.rps)).toFixed(3), cpus.length ? median(cpus).toFixed(3) : '-'])
  const heading = `### ${s.name} (${tool}): this build / ${refLabel}, paired by rep`
  const t = table(['rep', 'req/s ratio', 'CPU µs/req ratio'], lines)
  console.log(`\n${heading}\n${t}`)
  markdown.push(heading, '', t, '')
}

function printTable(s: Scenario, tool: string, rows: Row[]): void {
  const sums = rows.filter((r) => r.samples.length > 0).map((r) => ({ target: r.target, ...summary(r) }))
  const base = sums.find((x) => x.target === 'direct') ?? sums[0] ?? { target: '-', rps: NaN, p99: NaN }
  const nginx = sums.find((x) => x.target === 'nginx') ?? (s.h2 !== undefined ? sums.find((x) => x.target.startsWith('nginx')) : undefined)
  const lines: (string | number)[][] = sums.map((x) => [
    x.target,
    Math.round(x.rps),
    // One rep has no spread to show.
    reps < 2 ? 'n/a' : `±${x.spreadPct.toFixed(0)}%`,
    x.p50,
    x.p99,
    x.target === base.target ? '-' : `${x.p99 >= base.p99 ? '+' : ''}${(x.p99 - base.p99).toFixed(2)}`,
    x.p999,
    x.errors,
    x.cpu === null ? '-' : x.cpu.toFixed(1),
    x.cpuBest === null ? '-' : x.cpuBest.toFixed(1),
    x.sys === null ? '-' : x.sys.toFixed(1),
    x.rss === null ? '-' : x.rss.toFixed(0),
    (x.rps / base.rps).toFixed(2),
    nginx ? (x.rps / nginx.rps).toFixed(2) : '-',
  ])
  for (const r of rows) if (r.skipped !== undefined) lines.push([r.target, `skipped: ${r.skipped}`, ...Array<string>(12).fill('-')])
  const heading = `## ${s.name}: ${s.title} (${tool})`
  const t = table(['target', 'req/s', 'spread', 'p50 ms', 'p99 ms', `p99 vs ${base.target}`, 'p99.9 ms', 'errors', 'CPU µs/req', 'best rep', 'of it kernel µs', 'peak RSS MB', `x ${base.target}`, 'x nginx'], lines)
  const noisy = reps >= 2 && sums.some((x) => x.spreadPct > 15) ? '\nSome targets varied by more than 15% between reps: this run was disturbed (the best rep of CPU per request is the least disturbed figure).\n' : ''
  console.log(`\n${heading}\n${t}${noisy}`)
  markdown.push(heading, '', t, noisy)
}

// Only --save touches the committed results; a run to look at goes to the git-ignored bench/local/.
const outDir = path.join(here, '..', '..', 'bench', opt.save ? 'results' : 'local')
mkdirSync(outDir, { recursive: true })
const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, otherNodes: otherNodes.map((n) => n.label), memGb: Math.round(os.totalmem() / 2 ** 30), upstreams: upstreamKind, tuning, pinned: multiCore }
// A run of some scenarios keeps the others of the previous run (each scenario says when it ran).
const previous = existsSync(path.join(outDir, 'latest.json'))
  ? (JSON.parse(readFileSync(path.join(outDir, 'latest.json'), 'utf8')) as { scenarios?: Record<string, unknown> }).scenarios ?? {}
  : {}
const scenarioRecords = { ...previous }
for (const [name, byTool] of Object.entries(results)) scenarioRecords[name] = { started, machine, reps, durationS, warmupS, byTool }
writeFileSync(path.join(outDir, 'latest.json'), JSON.stringify({ scenarios: scenarioRecords }, null, 1))
// latest.md keeps the sections of scenarios this run did not measure, each under its own date.
const mdFile = path.join(outDir, 'latest.md')
const header = `<!-- ${started.toISOString()}, ${machine.cpus} x ${machine.model}, Node ${machine.node}; upstreams: ${upstreamKind}; ${tuning}; ${reps} reps x ${durationS} s -->`
const kept = existsSync(mdFile)
  ? readFileSync(mdFile, 'utf8')
      .split(/^(?=## )/m)
      .slice(1)
      .filter((sec) => !scenarios.some((s) => sec.startsWith(`## ${s.name}:`)))
  : []
writeFileSync(mdFile, `# zoo-proxy benchmark: the latest run of each scenario\n\n${kept.join('')}${header}\n\n${markdown.join('\n')}\n`)
writeFileSync(
  path.join(outDir, 'ratios.svg'),
  ratioChart(
    Object.entries(results).flatMap(([scenario, byTool]) =>
      Object.entries(byTool).map(([tool, rows]) => {
        const sums = rows.filter((r) => r.samples.length > 0).map((r) => ({ target: r.target, rps: summary(r).rps }))
        const base = sums.find((x) => x.target === 'nginx') ?? sums.find((x) => x.target === 'direct') ?? sums[0]!
        return { label: `${scenario} (${tool}) vs ${base.target}`, bars: sums.map((x) => ({ name: x.target, value: x.rps / base.rps })) }
      }),
    ),
  ),
)
console.log(`\nwrote ${path.relative(process.cwd(), outDir)}/latest.json, latest.md, ratios.svg`)

admin.close()
if (upstreamPeer) await stopChild(upstreamPeer.child)
if (h2cUpstreams !== null) await stopChild(h2cUpstreams.peer.child)
if (grpcInstances !== null) await stopChild(grpcInstances.child)
await zk.stop()
process.exit(0)
