// `npm run fuzz -- [--requests N] [--seed S] [--concurrency C] [--case w3#127]`: hostile HTTP/1.1
// against the proxy, to show it neither crashes nor hands one client's answer to another.
//
// The proxy runs in a child process (this file with --proxy-child, role `worker`, no ZooKeeper),
// so a crash in native code shows as the child exiting with a signal instead of taking the
// harness down with it. Two node:http upstreams in this process answer `/r/<id>/<kind>` with
// `<id>` in an `x-id` header and in the body, in the way `<kind>` names (normal, slow, large,
// reset, and raw misbehaving answers such as a second unasked-for answer in the same write).
// `concurrency` workers open raw sockets and send a seeded mix of cases, each family of attack
// at its own weight (see FAMILIES). Checked: the child never exits; no client gets an answer
// carrying another request's id (or a body other than its own); pipelined answers come in
// order; and at the end the proxy still answers a plain GET with 200.
//
// Every case draws from its own PRNG, seeded from (seed, worker, case number), so the seed
// printed first replays the run, and `--case w3#127` replays one case (same --requests and
// --concurrency; ids differ, the bytes otherwise do not).

import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { Buffer } from 'node:buffer'
import { createHash, randomInt } from 'node:crypto'
import { realpathSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import process from 'node:process'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { createLogger, createProxy, validateConfig } from '../lib/index.js'
import { Rng, Wire, mix } from './fuzz-wire.js'
import type { Answer } from './fuzz-wire.js'
import { adminReport, runAdminFuzz } from './fuzz-admin.js'
import { runZnodeFuzz, znodeReport } from './fuzz-znode.js'

const SELF = fileURLToPath(import.meta.url)
/** No connection lives longer: a case the proxy leaves hanging is cut and counted as `timeout`. */
const BOUND_MS = 3_000
/** The body of a `large` answer: several reads and writes, and backpressure on slow readers. */
const LARGE = 200 * 1024
/** The proxy's limits on a request head: bytes (MAX_HEADER_BYTES) and fields (limits.maxHeaders). */
const HEAD_LIMIT = 16 * 1024
const HEADER_COUNT_LIMIT = 100
const EMPTY: Buffer = Buffer.alloc(0)

export interface FuzzOptions {
  readonly requests: number
  readonly seed: number
  readonly concurrency?: number
  readonly log?: (line: string) => void
  /** Only these cases (`w3#127`), for a replay. */
  readonly cases?: readonly string[]
  /** Only cases of these families (the others are skipped, their draws kept, so tags stay the same). */
  readonly families?: readonly string[]
}

export interface FamilyStats {
  cases: number
  requests: number
  /** Time spent in this family's cases, summed over workers. */
  ms: number
  /** Cases that took a second or more (waiting out a hang, mostly). */
  slow: number
  /** What the requests of this family got: a status, or `closed`, `truncated`, `timeout`... */
  readonly outcomes: Record<string, number>
}

export interface FuzzResult {
  readonly seed: number
  readonly requests: number
  readonly seconds: number
  readonly perSecond: number
  /** The proxy child exited during the run. */
  readonly crash: { readonly code: number | null; readonly signal: string | null; readonly output: string; readonly lastCases: readonly string[] } | null
  /** Answers (or tunnel bytes) carrying another request's id, or an unasked-for answer's bytes. */
  readonly crossed: number
  /**
   * Of `crossed`, those carrying the id of another request on the same connection: pipelined
   * answers out of order, or a request forwarded as (or answered for) an earlier one.
   */
  readonly crossedSameConnection: number
  /** Own answers whose body is not what the upstream sent for that request. */
  readonly corrupt: number
  /** Examples of the three above. */
  readonly leaks: readonly string[]
  /** The status of a plain GET after the run (null: none came). */
  readonly finalStatus: number | null
  readonly families: Readonly<Record<string, FamilyStats>>
  /** Outcomes a request should not have had (wrong status, hang...), with one example each. */
  readonly unexpected: readonly { readonly what: string; readonly count: number; readonly example: string }[]
  readonly upstream: {
    readonly requests: number
    readonly upgrades: number
    /** Requests the upstreams could not parse: the proxy sent something malformed. */
    readonly malformed: Readonly<Record<string, number>>
    /** Requests cut off by the proxy (its client left mid-body): expected, counted apart. */
    readonly cut: number
    /** Requests smuggled inside another request's body that reached an upstream as requests. */
    readonly nested: number
    readonly openConnections: number
  }
  /** The child at the end: memory, and sockets still open (a leak shows here). */
  readonly proxy: { readonly rssMB: number; readonly sockets: number } | null
  readonly connectErrors: Readonly<Record<string, number>>
  readonly ok: boolean
}

// ---------------------------------------------------------------------------------------------
// What the upstreams do, by the `<kind>` in the path.

interface Kind {
  readonly weight: number
  /** Right outcomes for a valid request of this kind. */
  readonly ok: readonly string[]
  /** Written as raw bytes: a HEAD gets a body anyway (one more way to misbehave). */
  readonly raw?: boolean
}

const KINDS: Readonly<Record<string, Kind>> = {
  plain: { weight: 30, ok: ['200'] },
  chunked: { weight: 10, ok: ['200'] },
  large: { weight: 2, ok: ['200'] },
  slow: { weight: 6, ok: ['200'] },
  /** 100 Continue and 103 Early Hints before the answer. */
  info: { weight: 3, ok: ['200'] },
  /** The upstream closes its connection after the answer. */
  keepclose: { weight: 3, ok: ['200'] },
  /** Answered before the request body was read. */
  early: { weight: 3, ok: ['200'] },
  s204: { weight: 4, ok: ['204'] },
  s304: { weight: 3, ok: ['304'] },
  s502: { weight: 3, ok: ['502'] },
  s503: { weight: 3, ok: ['503'] },
  /** The head and part of the body, then the connection closes. */
  reset: { weight: 3, ok: ['truncated', 'closed', '502'] },
  /** The connection closes before any answer. */
  reset0: { weight: 2, ok: ['502'] },
  /** A chunked answer followed, in the same write, by a second answer nobody asked for. */
  poisonc: { weight: 4, ok: ['200'], raw: true },
  /** The same after a Content-Length answer. */
  poisoncl: { weight: 4, ok: ['200'], raw: true },
  dupcl: { weight: 2, ok: ['502'], raw: true },
  unasked101: { weight: 2, ok: ['502'], raw: true },
  /** HTTP/1.0, delimited by the close. */
  http10: { weight: 2, ok: ['200'], raw: true },
  badchunk: { weight: 2, ok: ['502', 'truncated', 'closed'], raw: true },
  /** Bare LF line ends in the answer head. */
  lfresp: { weight: 2, ok: ['200', '502'], raw: true },
}
const KIND_WEIGHTS = Object.entries(KINDS).map(([k, v]) => [k, v.weight] as const)
const POISON = 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON'

/** The body the upstreams send for a request (the client computes it too, to compare). */
export function answerBody(id: string, kind: string, length: number, sha: string): string {
  if (kind === 'early') return `id=${id};early\n`
  const base = `id=${id};${kind};${length};${sha}\n`
  if (kind !== 'large') return base
  const unit = `id=${id};`
  return (base + unit.repeat(Math.ceil((LARGE - base.length) / unit.length))).slice(0, LARGE)
}

function rawAnswer(kind: string, id: string, body: string): string | null {
  switch (kind) {
    case 'poisonc':
      return `HTTP/1.1 200 OK\r\nx-id: ${id}\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n${POISON}`
    case 'poisoncl':
      return `HTTP/1.1 200 OK\r\nx-id: ${id}\r\nContent-Length: ${body.length}\r\n\r\n${body}${POISON}`
    case 'dupcl':
      return `HTTP/1.1 200 OK\r\nx-id: ${id}\r\nContent-Length: ${body.length}\r\nContent-Length: ${body.length + 6}\r\n\r\n${body}XXXXXX`
    case 'unasked101':
      return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-id: ${id}\r\n\r\n${body}`
    case 'http10':
      return `HTTP/1.0 200 OK\r\nx-id: ${id}\r\n\r\n${body}`
    case 'badchunk':
      return `HTTP/1.1 200 OK\r\nx-id: ${id}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`
    case 'lfresp':
      return `HTTP/1.1 200 OK\nx-id: ${id}\nContent-Length: ${body.length}\n\n${body}`
    default:
      return null
  }
}

interface UpstreamStats {
  requests: number
  upgrades: number
  nested: number
  cut: number
  readonly malformed: Record<string, number>
}

interface Upstream {
  readonly port: number
  readonly open: number
  close(): Promise<void>
}

/** A small delay from the id, so `slow` needs no PRNG of its own. */
function delayOf(id: string): number {
  let h = 0
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) | 0
  return 1 + (Math.abs(h) % 5)
}

function answer(req: http.IncomingMessage, res: http.ServerResponse, id: string, kind: string, body: string): void {
  const socket = req.socket
  const plain = (extra: Record<string, string> = {}) => {
    res.writeHead(200, { 'x-id': id, 'content-type': 'text/plain', 'content-length': String(body.length), ...extra })
    res.end(body)
  }
  switch (kind) {
    case 'plain':
    case 'early':
      return plain()
    case 'keepclose':
      return plain({ connection: 'close' })
    case 'slow':
      setTimeout(plain, delayOf(id))
      return
    case 'info':
      res.writeContinue()
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' })
      return plain()
    case 'chunked': {
      const third = Math.floor(body.length / 3)
      res.writeHead(200, { 'x-id': id, 'content-type': 'text/plain' })
      res.write(body.slice(0, third))
      res.write(body.slice(third, 2 * third))
      res.end(body.slice(2 * third))
      return
    }
    case 'large': {
      const quarter = Math.floor(body.length / 4)
      res.writeHead(200, { 'x-id': id, 'content-length': String(body.length) })
      for (let i = 0; i < 3; i++) res.write(body.slice(i * quarter, (i + 1) * quarter))
      res.end(body.slice(3 * quarter))
      return
    }
    case 's204':
    case 's304':
      res.writeHead(kind === 's204' ? 204 : 304, { 'x-id': id })
      res.end()
      return
    case 's502':
    case 's503':
      res.writeHead(kind === 's502' ? 502 : 503, { 'x-id': id, 'content-length': String(body.length) })
      res.end(body)
      return
    case 'reset':
      res.writeHead(200, { 'x-id': id, 'content-length': String(body.length + 1000) })
      res.write(body)
      setImmediate(() => socket.destroy())
      return
    case 'reset0':
      socket.destroy()
      return
  }
  const raw = rawAnswer(kind, id, body)
  if (raw === null) {
    const unknown = `id=${id};unknown\n`
    res.writeHead(404, { 'x-id': id, 'content-length': String(unknown.length) })
    res.end(unknown)
    return
  }
  // Past node:http's response object, straight to the socket; the connection is kept (the
  // proxy must not reuse it) except where the answer is delimited by the close or ambiguous.
  socket.write(raw, 'latin1')
  if (kind === 'http10' || kind === 'lfresp') socket.end()
}

function onUpgrade(stats: UpstreamStats, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  stats.upgrades++
  socket.on('error', () => {})
  // As any server: the proxy's FIN is answered with ours (node:http keeps upgraded sockets half-open).
  socket.on('end', () => socket.end())
  const m = /^\/(ws-[a-z-]+)\/([^/?]+)/.exec(req.url ?? '')
  const id = m?.[2] ?? ''
  const accept = () => {
    if (socket.destroyed) return
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-id: ${id}\r\n\r\n`)
    if (head.length > 0) socket.write(head)
    socket.on('data', (d: Buffer) => socket.write(d))
  }
  const declined = `id=${id};declined\n`
  switch (m?.[1]) {
    case 'ws-accept':
      return accept()
    case 'ws-slow':
      setTimeout(accept, 5)
      return
    case 'ws-decline':
      // Declined on the raw socket, which stays open: the case that crashed the proxy once.
      socket.write(`HTTP/1.1 404 Not Found\r\nx-id: ${id}\r\nContent-Length: 0\r\n\r\n`)
      return
    case 'ws-decline-close':
      socket.end(`HTTP/1.1 404 Not Found\r\nx-id: ${id}\r\nContent-Length: 0\r\n\r\n`)
      return
    case 'ws-decline-body':
      socket.write(`HTTP/1.1 404 Not Found\r\nx-id: ${id}\r\nContent-Length: ${declined.length}\r\n\r\n${declined}`)
      return
    default:
      socket.destroy()
  }
}

async function startUpstream(stats: UpstreamStats, nested: ReadonlySet<string>): Promise<Upstream> {
  const sockets = new Set<Socket>()
  const server = http.createServer({ maxHeaderSize: 64 * 1024, keepAliveTimeout: 5_000 }, (req, res) => {
    stats.requests++
    req.on('error', () => {})
    res.on('error', () => {})
    const m = /^\/r\/([^/?]+)\/([^/?]+)/.exec(req.url ?? '')
    if (m === null) {
      req.resume()
      req.on('end', () => {
        res.writeHead(404, { 'content-length': '0' })
        res.end()
      })
      return
    }
    const [, id, kind] = m as unknown as [string, string, string]
    if (nested.has(id)) stats.nested++
    if (kind === 'early') {
      answer(req, res, id, kind, answerBody(id, kind, 0, ''))
      req.resume()
      return
    }
    const hash = createHash('sha1')
    let length = 0
    req.on('data', (c: Buffer) => {
      hash.update(c)
      length += c.length
    })
    req.on('end', () => answer(req, res, id, kind, answerBody(id, kind, length, hash.digest('hex'))))
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => onUpgrade(stats, req, socket, head))
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A reset or a close mid-request is a client (the proxy) going away; a parse error is the
    // proxy sending something malformed, which it must never do.
    if (err.code === 'HPE_INVALID_EOF_STATE') stats.cut++
    else if (err.code?.startsWith('HPE_')) stats.malformed[err.code] = (stats.malformed[err.code] ?? 0) + 1
    socket.destroy()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    get open() {
      return sockets.size
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      }),
  }
}

// ---------------------------------------------------------------------------------------------
// The proxy under test, in a child process.

async function proxyChild(ports: readonly number[]): Promise<void> {
  const config = await validateConfig(
    {
      listen: '127.0.0.1:0',
      zookeeper: { connect: '127.0.0.1:1' },
      log: { level: 'silent' },
      shutdownTimeoutMs: 1_000,
      services: [
        {
          name: 's',
          path: '/s',
          timeoutMs: 2_000,
          maxConnectionsPerInstance: 2,
          retry: { bufferBytes: 4096 },
          // Short ejections: the failing kinds eject instances now and then, and both must be
          // back soon for the retries of the next ones to have somewhere to go.
          outlier: { baseEjectionMs: 200, maxEjectionMs: 1_000 },
        },
      ],
    },
    process.cwd(),
  )
  const proxy = await createProxy(config, { role: 'worker', logger: createLogger('silent') })
  proxy.applySnapshot(
    's',
    ports.map((port, i) => ({ key: `/s/${i}`, host: '127.0.0.1', port, weight: 1, state: 'up' as const, meta: {} })),
  )
  await proxy.start()
  process.on('message', (m: unknown) => {
    if (m === 'stats') {
      const sockets = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length
      process.send?.({ type: 'stats', rss: process.memoryUsage().rss, sockets })
    } else if (m === 'stop') void proxy.close().finally(() => process.exit(0))
  })
  // The harness is gone (killed, crashed): nobody will stop this process otherwise.
  process.on('disconnect', () => process.exit(0))
  process.send?.({ type: 'listening', port: proxy.address().port })
}

interface ProxyChild {
  readonly port: number
  /** Set when the process exited. */
  exit: { code: number | null; signal: string | null } | null
  onExit: (() => void) | null
  /** The last 16 KiB it wrote to stdout and stderr. */
  output(): string
  stats(): Promise<{ rss: number; sockets: number } | null>
  stop(): Promise<void>
}

async function startProxyChild(ports: readonly number[]): Promise<ProxyChild> {
  const proc: ChildProcess = fork(SELF, ['--proxy-child', ...ports.map(String)], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    execArgv: ['--enable-source-maps'],
  })
  let tail = ''
  const keep = (d: Buffer) => {
    tail = (tail + d.toString('utf8')).slice(-16 * 1024)
  }
  proc.stdout?.on('data', keep)
  proc.stderr?.on('data', keep)
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const port = await new Promise<number>((resolve, reject) => {
    proc.on('message', (m: { type?: string; port?: number }) => {
      if (m.type === 'listening' && m.port !== undefined) resolve(m.port)
    })
    proc.once('exit', (code, signal) => reject(new Error(`the proxy child exited while starting (code ${code}, signal ${signal}):\n${tail}`)))
  })
  const child: ProxyChild = {
    port,
    exit: null,
    onExit: null,
    output: () => tail,
    stats: () =>
      new Promise((resolve) => {
        if (child.exit !== null) return resolve(null)
        const timer = setTimeout(() => resolve(null), 2_000)
        const on = (m: { type?: string; rss?: number; sockets?: number }) => {
          if (m.type !== 'stats') return
          proc.off('message', on)
          clearTimeout(timer)
          resolve({ rss: m.rss ?? 0, sockets: m.sockets ?? 0 })
        }
        proc.on('message', on)
        proc.send('stats')
      }),
    stop: async () => {
      if (child.exit !== null) return
      child.onExit = null
      proc.send('stop')
      const killer = setTimeout(() => proc.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(killer)
    },
  }
  proc.once('exit', (code, signal) => {
    child.exit = { code, signal }
    child.onExit?.()
  })
  return child
}

// ---------------------------------------------------------------------------------------------
// One run's state: ids, counters, what was seen.

/** A check on an id, so a mutated id (one byte changed) is never taken for another request's. */
function checkOf(n: number): string {
  let h = Math.imul(n ^ 0x5bd1e995, 0x27d4eb2d)
  h ^= h >>> 15
  h = Math.imul(h, 0x165667b1)
  h ^= h >>> 13
  return ((h >>> 0) % 1_679_616).toString(36).padStart(4, '0')
}

interface CaseRecord {
  readonly tag: string
  readonly family: string
  note: string
  readonly wires: Wire[]
}

class Run {
  readonly seed: number
  readonly log: (line: string) => void
  readonly families: Record<string, FamilyStats> = {}
  readonly unexpected = new Map<string, { count: number; example: string }>()
  readonly leaks: string[] = []
  readonly nested = new Set<string>()
  readonly wires = new Set<Wire>()
  readonly connectErrors: Record<string, number> = {}
  /** The last cases started (a crash report lists them, and every case still open). */
  readonly recent: CaseRecord[] = []
  readonly open = new Set<CaseRecord>()
  crossed = 0
  crossedSameConnection = 0
  corrupt = 0
  requests = 0
  stopped = false
  #next = 1

  constructor(seed: number, log: (line: string) => void) {
    this.seed = seed
    this.log = log
  }

  newId(): string {
    const n = this.#next++
    return `${n.toString(36)}-${checkOf(n)}`
  }

  /** An id this run gave to a request (not one a mutation made up). */
  issued(id: string): boolean {
    const m = /^([0-9a-z]{1,8})-([0-9a-z]{4})$/.exec(id)
    if (m === null) return false
    const n = parseInt(m[1]!, 36)
    return n > 0 && n < this.#next && `${n.toString(36)}-${checkOf(n)}` === id
  }

  family(name: string): FamilyStats {
    return (this.families[name] ??= { cases: 0, requests: 0, ms: 0, slow: 0, outcomes: {} })
  }

  note(what: string, example: string): void {
    const u = this.unexpected.get(what)
    if (u !== undefined) u.count++
    else this.unexpected.set(what, { count: 1, example })
  }

  leak(kind: 'crossed' | 'crossedSameConnection' | 'corrupt', line: string): void {
    if (kind === 'crossedSameConnection') this.crossed++
    this[kind]++
    if (this.leaks.length < 30) this.leaks.push(`${kind}: ${line}`)
    if (this.leaks.length <= 5) this.log(`LEAK ${kind}: ${line}`)
  }

  started(rec: CaseRecord): void {
    this.open.add(rec)
    this.recent.push(rec)
    if (this.recent.length > 16) this.recent.shift()
  }

  stop(): void {
    this.stopped = true
    for (const w of this.wires) w.destroy()
  }
}

function describeCase(rec: CaseRecord, withRead = false): string {
  const wrote = rec.wires.map((w) => w.written().slice(0, 600)).join(' | ')
  const read = withRead ? `; read ${rec.wires.map((w) => w.read().slice(0, 1200)).join(' | ')}` : ''
  return `${rec.tag} ${rec.family}${rec.note === '' ? '' : ` (${rec.note})`}: wrote ${wrote}${read}`
}

// ---------------------------------------------------------------------------------------------
// Requests, and what their answers must be.

interface ReqSpec {
  readonly id: string
  readonly method: string
  readonly kind: string
  readonly head: Buffer
  /** The body as framed on the wire (chunked or not). */
  readonly body: Buffer
  /** The body's content, and its sha1 (the upstream echoes both). */
  readonly length: number
  readonly sha: string
  /** Asked the proxy to close after it (Connection: close, or HTTP/1.0 without keep-alive). */
  readonly close: boolean
  /** Bytes may have been changed after it was made: its id may not be its own any more. */
  readonly mutated: boolean
  /** A well-formed request: its outcome must be one its kind allows (or `ok`). */
  readonly valid: boolean
  /** Outcomes allowed instead of the kind's; null: any but `timeout` and `malformed`. */
  readonly ok?: readonly string[] | null
}

interface RequestOptions {
  readonly body?: 'maybe' | 'always' | 'never'
  readonly maxBody?: number
  readonly minBody?: number
  readonly kinds?: readonly (readonly [string, number])[]
  readonly version?: '1.0' | '1.1'
  /** The last request of its connection: it may ask to close. */
  readonly last?: boolean
  readonly expectContinue?: boolean
  readonly extraHeaders?: readonly (readonly [string, string])[]
  /** Line ends: CRLF, or bare LF for all lines, only the blank line, or some lines. */
  readonly eol?: 'crlf' | 'lf' | 'last-lf' | 'mixed'
  readonly query?: string
}

const METHODS = [['GET', 55], ['HEAD', 10], ['POST', 15], ['PUT', 8], ['PATCH', 4], ['DELETE', 5], ['OPTIONS', 3]] as const
const BODY_METHODS = [['POST', 60], ['PUT', 30], ['PATCH', 10]] as const
const NO_BODY_METHODS = [['GET', 75], ['HEAD', 15], ['DELETE', 6], ['OPTIONS', 4]] as const
const WITH_BODY = new Set(['POST', 'PUT', 'PATCH'])
/** Body sizes: empty, small, up to the 4096 bytes the proxy holds for retries, and past it (streamed). */
const SIZES: readonly (readonly [readonly [number, number], number])[] = [
  [[0, 0], 8],
  [[1, 64], 20],
  [[65, 4096], 40],
  [[4097, 20_000], 25],
  [[20_001, 100_000], 7],
]

function sha1(b: Buffer): string {
  return createHash('sha1').update(b).digest('hex')
}

function casing(rng: Rng, name: string): string {
  const r = rng.next()
  return r < 0.7 ? name : r < 0.85 ? name.toLowerCase() : name.toUpperCase()
}

function encodeChunked(rng: Rng, payload: Buffer, eol: string): Buffer {
  const parts: Buffer[] = []
  for (let at = 0; at < payload.length; ) {
    const n = Math.min(rng.int(1, 8192), payload.length - at)
    parts.push(Buffer.from(`${n.toString(16)}${rng.chance(0.1) ? ';ext=1' : ''}${eol}`, 'latin1'), payload.subarray(at, at + n), Buffer.from(eol, 'latin1'))
    at += n
  }
  parts.push(Buffer.from(rng.chance(0.1) ? `0${eol}x-trailer: t${eol}${eol}` : `0${eol}${eol}`, 'latin1'))
  return Buffer.concat(parts)
}

function makeRequest(run: Run, rng: Rng, o: RequestOptions = {}): ReqSpec {
  const want = o.body ?? 'maybe'
  const method = want === 'always' ? rng.weighted(BODY_METHODS) : want === 'never' ? rng.weighted(NO_BODY_METHODS) : rng.weighted(METHODS)
  const kind = rng.weighted(o.kinds ?? KIND_WEIGHTS)
  const id = run.newId()
  const version = o.version ?? (rng.chance(0.08) ? '1.0' : '1.1')
  const headers: (readonly [string, string])[] = []
  if (version === '1.1' || rng.chance(0.5)) headers.push([casing(rng, 'Host'), rng.pick(['fuzz.test', 'fuzz.test:80', 'localhost'])])
  if (rng.chance(0.5)) headers.push(['User-Agent', 'zoo-fuzz/1'])
  if (rng.chance(0.3)) headers.push(['Accept', '*/*'])
  if (rng.chance(0.1)) headers.push(['X-Forwarded-For', '10.1.2.3'])
  if (rng.chance(0.05)) headers.push(['Connection', 'keep-alive, X-Hop'], ['X-Hop', 'dropped'])
  for (let i = rng.int(0, 2); i > 0; i--) headers.push([`X-Pad-${i}`, rng.text(rng.int(0, 200))])
  let close = false
  if (version === '1.0') {
    if (rng.chance(0.5)) headers.push([casing(rng, 'Connection'), 'keep-alive'])
    else close = true
  } else if (o.last === true && rng.chance(0.25)) {
    headers.push([casing(rng, 'Connection'), 'close'])
    close = true
  }
  if (o.extraHeaders !== undefined) headers.push(...o.extraHeaders)
  let payload: Buffer = EMPTY
  let body: Buffer = EMPTY
  const eolMode = o.eol ?? 'crlf'
  const eol = eolMode === 'lf' ? '\n' : '\r\n'
  if (WITH_BODY.has(method)) {
    const [lo, hi] = rng.weighted(SIZES)
    const size = Math.max(o.minBody ?? 0, Math.min(rng.int(lo, hi), o.maxBody ?? Infinity))
    payload = rng.bytes(size)
    if (method === 'POST' && rng.chance(0.1)) headers.push(['Idempotency-Key', id])
    if (version === '1.1' && rng.chance(0.35)) {
      headers.push([casing(rng, 'Transfer-Encoding'), 'chunked'])
      body = encodeChunked(rng, payload, eol)
    } else {
      headers.push([casing(rng, 'Content-Length'), String(size)])
      body = payload
    }
  }
  if (o.expectContinue === true) headers.push([casing(rng, 'Expect'), '100-continue'])
  const lines = [`${method} /r/${id}/${kind}${o.query ?? (rng.chance(0.1) ? `?q=${rng.int(0, 1e6)}` : '')} HTTP/${version}`]
  for (const [n, v] of headers) lines.push(`${n}: ${v}`)
  let head = ''
  for (const line of lines) head += line + (eolMode === 'mixed' && rng.chance(0.5) ? '\n' : eol)
  head += eolMode === 'crlf' || (eolMode === 'mixed' && rng.chance(0.5)) ? '\r\n' : '\n'
  return {
    id,
    method,
    kind,
    head: Buffer.from(head, 'latin1'),
    body,
    length: payload.length,
    sha: sha1(payload),
    close,
    mutated: false,
    valid: eolMode === 'crlf',
  }
}

function bytesOf(spec: ReqSpec): Buffer {
  return Buffer.concat([spec.head, spec.body])
}

/** A spec for a request the harness wrote by hand (garbage, upgrades): only its id is known. */
function handMade(id: string, method: string, kind: string, o: { valid?: boolean; mutated?: boolean; ok?: readonly string[] | null } = {}): ReqSpec {
  return { id, method, kind, head: EMPTY, body: EMPTY, length: 0, sha: '', close: true, mutated: o.mutated ?? true, valid: o.valid ?? false, ok: o.ok }
}

function expectedBody(spec: ReqSpec): string | null {
  if (spec.kind === 's204' || spec.kind === 's304') return ''
  if (KINDS[spec.kind] === undefined) return null
  return answerBody(spec.id, spec.kind, spec.length, spec.sha)
}

/**
 * What a request got: its answer's status, or `closed` (no answer), `truncated` (part of one),
 * `timeout` (nothing more within BOUND_MS), `malformed` (bytes that are not HTTP/1.1).
 * `503-no-endpoint`: the balancer had no instance to offer (both ejected, or one ejected and the
 * other on probation with its one probe in flight): the failing kinds eject instances on purpose.
 */
function outcomeOf(a: Answer | undefined, wire: Wire, spec?: ReqSpec): string {
  if ((a === undefined || !a.complete) && wire.reader.malformed !== null) return 'malformed'
  if (a === undefined) return wire.timedOut ? 'timeout' : 'closed'
  if (!a.complete) return wire.timedOut ? 'timeout' : 'truncated'
  if (a.status === 503 && a.headers.get('x-id') === undefined) {
    // A HEAD shows no body, only the JSON type of the proxy's error; an upgrade refused for want
    // of an instance gets a bare 503 (lib/http/websocket.ts).
    const json = a.headers.get('content-type') === 'application/json'
    if (a.body.includes('ZP_ERR_NO_ENDPOINT') || (spec?.method === 'HEAD' && json) || (spec?.kind.startsWith('ws-') === true && a.body.length === 0)) {
      return '503-no-endpoint'
    }
  }
  return String(a.status)
}

function allowed(spec: ReqSpec, outcome: string): boolean {
  if (outcome === 'dropped' || outcome === '503-no-endpoint') return true
  if (spec.ok === null) return outcome !== 'timeout' && outcome !== 'malformed'
  // No answer after the client's half-close, where a cut connection is a right answer (a broken
  // upstream answer): the same outcome, seen from a client that had stopped sending.
  if (outcome === 'closed-after-client-end') return allowed(spec, 'closed')
  if (spec.ok !== undefined) return spec.ok.includes(outcome)
  const k = KINDS[spec.kind]
  if (k === undefined) return true
  // A HEAD to an upstream that sends a body anyway (or resets after the head): the head is a
  // whole answer already; what the proxy makes of the rest may differ, as long as it ends.
  if (spec.method === 'HEAD' && (k.raw === true || spec.kind === 'reset')) return outcome !== 'timeout' && outcome !== 'malformed'
  return k.ok.includes(outcome)
}

/** The connection cannot carry another answer after `a`. */
function endsConnection(spec: ReqSpec, a: Answer | undefined): boolean {
  if (a === undefined || !a.complete) return true
  const c = a.headers.get('connection') ?? ''
  return spec.close || /close/i.test(c)
}

const MARKER = /id=([0-9a-z]{1,8}-[0-9a-z]{4});/g

// ---------------------------------------------------------------------------------------------
// One case: a connection (or a few) and the requests on it.

class Case {
  readonly run: Run
  readonly rng: Rng
  readonly port: number
  readonly family: string
  /** Requests this case may still count. */
  readonly max: number
  readonly rec: CaseRecord
  sent = 0

  constructor(run: Run, rng: Rng, port: number, tag: string, family: string, max: number) {
    this.run = run
    this.rng = rng
    this.port = port
    this.family = family
    this.max = max
    this.rec = { tag, family, note: '', wires: [] }
  }

  open(): Wire {
    const w = new Wire(this.port, BOUND_MS, (gone) => {
      this.run.wires.delete(gone)
      if (gone.error !== null && gone.received === 0 && gone.error !== 'ECONNRESET' && gone.error !== 'EPIPE') {
        this.run.connectErrors[gone.error] = (this.run.connectErrors[gone.error] ?? 0) + 1
      }
    })
    this.run.wires.add(w)
    this.rec.wires.push(w)
    return w
  }

  request(o: RequestOptions = {}): ReqSpec {
    this.sent++
    return makeRequest(this.run, this.rng, o)
  }

  tally(outcome: string): void {
    const f = this.run.family(this.family)
    f.outcomes[outcome] = (f.outcomes[outcome] ?? 0) + 1
  }

  unexpected(what: string, detail = ''): void {
    this.run.note(`${this.family}: ${what}`, `${this.rec.tag}${this.rec.note === '' ? '' : ` (${this.rec.note})`}${detail === '' ? '' : ` ${detail}`}`)
  }

  /** Writes `bytes` at once or in pieces, each piece a turn of the event loop apart. */
  async send(w: Wire, bytes: Buffer, pieces = 3): Promise<void> {
    const rng = this.rng
    if (bytes.length < 2 || pieces < 2 || rng.chance(0.7)) {
      w.write(bytes)
      return
    }
    const cuts: number[] = []
    for (let i = rng.int(1, pieces - 1); i > 0; i--) cuts.push(rng.int(1, bytes.length - 1))
    cuts.sort((a, b) => a - b).push(bytes.length)
    let at = 0
    for (const cut of cuts) {
      if (cut <= at) continue
      w.write(bytes.subarray(at, cut))
      at = cut
      if (rng.chance(0.1)) await sleep(1)
      else await tick()
    }
  }

  /**
   * Checks one answer against the request it answers: its outcome is tallied (and must be one its
   * kind allows if the request was valid), and it must carry that request's id and body only.
   */
  judge(spec: ReqSpec, a: Answer | undefined, w: Wire, siblings: readonly ReqSpec[], forced?: string): string {
    const outcome = forced !== undefined && a === undefined ? forced : outcomeOf(a, w, spec)
    this.tally(outcome)
    if (a !== undefined) this.checkLeak(spec, a, siblings)
    if (spec.valid && !allowed(spec, outcome)) {
      const why =
        outcome === 'malformed'
          ? ` (${w.reader.malformed})`
          : a?.complete === true
            ? ` body ${JSON.stringify(a.body.toString('latin1').slice(0, 120))}`
            : outcome === 'timeout'
              ? `; ${describeCase(this.rec, true)}`
              : ''
      this.unexpected(`${spec.method} ${spec.kind} -> ${outcome}`, `id ${spec.id}${why}${process.env.FUZZ_DESCRIBE ? `; ${describeCase(this.rec, true)}` : ''}`)
    }
    return outcome
  }

  checkLeak(spec: ReqSpec, a: Answer, siblings: readonly ReqSpec[]): void {
    const run = this.run
    const foreign = (id: string) => id !== spec.id && (!spec.mutated || run.issued(id))
    let bad: string | null = null
    let other: string | null = null
    const xid = a.headers.get('x-id')
    const ok2xx = a.status >= 200 && a.status < 300
    // The common case first: an own answer whose body is exactly what the upstream sent.
    const want = !spec.mutated && a.complete && ok2xx && spec.method !== 'HEAD' ? expectedBody(spec) : null
    if (want !== null && xid === spec.id && a.body.length === want.length && a.body.toString('latin1') === want) return
    if (xid !== undefined && foreign(xid)) {
      bad = `x-id ${xid}`
      other = xid
    } else if (ok2xx && xid === undefined) bad = 'a 2xx answer without x-id (an answer nobody asked for)'
    else if (a.body.length > 0) {
      const text = a.body.toString('latin1')
      if (text.includes('POISON')) bad = 'the POISON answer in its body'
      else if (text.includes('id=')) {
        for (const m of text.matchAll(MARKER)) {
          if (foreign(m[1]!)) {
            bad = `body marker of ${m[1]}`
            other = m[1]!
            break
          }
        }
      }
    }
    const where = `${this.rec.tag} ${this.family}: ${spec.method} /r/${spec.id}/${spec.kind} got ${a.status}`
    if (bad !== null) {
      const sibling = other !== null && siblings.some((s) => s !== spec && s.id === other)
      run.leak(sibling ? 'crossedSameConnection' : 'crossed', `${where} with ${bad}; ${describeCase(this.rec, true)}`)
      return
    }
    if (want === null || (a.body.length === want.length && a.body.toString('latin1') === want)) return
    const got = JSON.stringify(a.body.toString('latin1').slice(0, 120))
    if (KINDS[spec.kind]?.raw === true) this.unexpected(`${spec.method} ${spec.kind} -> body not as sent`, got)
    else run.leak('corrupt', `${where}, body ${a.body.length} bytes ${got}, wanted ${want.length} bytes; ${describeCase(this.rec, true)}`)
  }

  /**
   * The end of a case's connection: the client leaves (destroy), or half-closes and then the proxy
   * must close. Answers beyond the requests sent are checked too: nobody asked for them.
   */
  async finish(w: Wire, specs: readonly ReqSpec[], strict: boolean): Promise<void> {
    if (!w.closed && this.rng.chance(0.4)) {
      w.end()
      if (!(await w.untilClosed()) && strict) this.unexpected('no close after the client half-closed')
    }
    w.destroy()
    const answers = w.reader.answers
    for (let i = specs.length; i < answers.length; i++) {
      const last = specs[specs.length - 1]
      if (last !== undefined) this.checkLeak(last, answers[i]!, specs)
      this.tally('extra-answer')
      if (strict) this.unexpected(`an answer beyond the ${specs.length} request(s) sent (${answers[i]!.status})`)
    }
  }
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

function answered(w: Wire, i: number): () => boolean {
  return () => w.reader.answers[i]?.complete === true || w.reader.malformed !== null
}

// ---------------------------------------------------------------------------------------------
// The families of cases.

/** Valid requests one after another on a keep-alive connection. */
async function sequential(c: Case, bodies: 'maybe' | 'always'): Promise<void> {
  const n = c.rng.int(1, Math.min(bodies === 'always' ? 2 : 4, c.max))
  const w = c.open()
  const specs: ReqSpec[] = []
  for (let i = 0; i < n; i++) {
    const spec = c.request({ body: bodies, last: i === n - 1 })
    specs.push(spec)
    w.reader.expect(spec.method === 'HEAD')
    await c.send(w, bytesOf(spec))
    await w.until(answered(w, i))
    const a = w.reader.answers[i]
    c.judge(spec, a, w, specs)
    if (endsConnection(spec, a)) break
  }
  await c.finish(w, specs, true)
}

/** 2-5 valid requests in one go (or a few pieces); the answers must come in their order. */
async function pipeline(c: Case): Promise<void> {
  const n = c.rng.int(Math.min(2, c.max), Math.min(5, c.max))
  const specs: ReqSpec[] = []
  for (let i = 0; i < n; i++) specs.push(c.request({ maxBody: c.rng.chance(0.8) ? 4096 : 20_000, last: i === n - 1 }))
  const halfClose = c.rng.chance(0.25)
  c.rec.note = halfClose ? 'then half-close' : ''
  const w = c.open()
  for (const s of specs) w.reader.expect(s.method === 'HEAD')
  await c.send(w, Buffer.concat(specs.map(bytesOf)), 4)
  if (halfClose) w.end()
  await w.until(answered(w, n - 1))
  let ended = false
  for (let i = 0; i < n; i++) {
    const a = w.reader.answers[i]
    // After an answer that ends the connection the rest are not answered, rightly.
    c.judge(specs[i]!, a, w, specs, ended ? 'dropped' : halfClose && !w.timedOut && w.reader.malformed === null ? 'closed-after-client-end' : undefined)
    ended ||= endsConnection(specs[i]!, a)
  }
  await c.finish(w, specs, true)
}

/** A body sent after `Expect: 100-continue` got its 100 (or right away, as clients may). */
async function expectContinue(c: Case): Promise<void> {
  const spec = c.request({ body: 'always', minBody: 1, expectContinue: true, version: '1.1' })
  const w = c.open()
  w.reader.expect(false)
  w.write(spec.head)
  if (c.rng.chance(0.85)) {
    const got = await w.until(() => w.reader.interim > 0 || w.reader.answers.length > 0, 1_000)
    c.tally(w.reader.interim > 0 ? '100-continue' : 'no-100')
    if (!got && !w.closed) c.unexpected('no 100 Continue (nor an answer) within 1 s', `id ${spec.id}`)
  }
  if (w.reader.answers.length === 0) await c.send(w, spec.body)
  await w.until(answered(w, 0))
  c.judge(spec, w.reader.answers[0], w, [spec])
  await c.finish(w, [spec], true)
}

const GARBAGE = [
  ['random-bytes', 10],
  ['random-text', 6],
  ['bad-method', 4],
  ['bad-version', 4],
  ['absolute-form', 3],
  ['asterisk', 2],
  ['connect', 2],
  ['cl-and-te', 4],
  ['te-not-chunked', 3],
  ['dup-cl', 3],
  ['bad-cl', 4],
  ['obs-fold', 2],
  ['space-before-colon', 2],
  ['ctl-in-value', 3],
  ['bad-chunk-size', 3],
  ['chunk-overflow', 2],
  ['bad-header-name', 2],
  ['leading-crlf', 2],
  ['no-host', 2],
  ['two-hosts', 2],
  ['nul-in-target', 2],
  ['http09', 1],
  ['huge-cl', 2],
  ['lf-in-chunk', 2],
] as const

/** Requests no parser should take as they are, or that only a lenient one would; smuggling tries. */
function garbageBytes(c: Case, variant: string, id: string): Buffer {
  const rng = c.rng
  const nid = c.run.newId()
  c.run.nested.add(nid)
  const nested = `GET /r/${nid}/plain HTTP/1.1\r\nHost: fuzz\r\n\r\n`
  const target = `/r/${id}/plain`
  const post = (headers: string, body: string) => `POST ${target} HTTP/1.1\r\nHost: fuzz\r\n${headers}\r\n${body}`
  switch (variant) {
    case 'random-bytes':
      return rng.bytes(rng.int(1, 600))
    case 'random-text': {
      let s = ''
      for (let i = rng.int(1, 400); i > 0; i--) s += rng.chance(0.08) ? rng.pick(['\r\n', '\n', '\r', ': ', ' ']) : rng.text(1)
      return Buffer.from(s, 'latin1')
    }
    case 'bad-method':
      return Buffer.from(`${rng.text(rng.int(1, 12))} ${target} HTTP/1.1\r\nHost: fuzz\r\n\r\n`, 'latin1')
    case 'bad-version':
      return Buffer.from(`GET ${target} ${rng.pick(['HTTP/2.0', 'HTTP/1.2', 'HTTP/0.9', 'HTTP/1', 'http/1.1', 'HTTP/1.1x', 'HTTP/11.1'])}\r\nHost: fuzz\r\n\r\n`, 'latin1')
    case 'absolute-form':
      return Buffer.from(`GET http://fuzz${target} HTTP/1.1\r\nHost: fuzz\r\n\r\n`, 'latin1')
    case 'asterisk':
      return Buffer.from('OPTIONS * HTTP/1.1\r\nHost: fuzz\r\n\r\n', 'latin1')
    case 'connect':
      return Buffer.from('CONNECT fuzz:443 HTTP/1.1\r\nHost: fuzz:443\r\n\r\n', 'latin1')
    case 'cl-and-te': {
      const body = `0\r\n\r\n${nested}`
      const cl = `Content-Length: ${rng.chance(0.5) ? body.length : 5}\r\n`
      const te = 'Transfer-Encoding: chunked\r\n'
      return Buffer.from(post(rng.chance(0.5) ? cl + te : te + cl, body), 'latin1')
    }
    case 'te-not-chunked': {
      const te = rng.pick(['gzip', 'chunked, gzip', 'identity', 'chunked, chunked', 'xchunked', 'chunked;q=1'])
      return Buffer.from(post(`Transfer-Encoding: ${te}\r\n${rng.chance(0.5) ? 'Content-Length: 5\r\n' : ''}`, `5\r\nhello\r\n0\r\n\r\n${nested}`), 'latin1')
    }
    case 'dup-cl':
      return Buffer.from(post(`Content-Length: 5\r\nContent-Length: ${5 + nested.length}\r\n`, `hello${nested}`), 'latin1')
    case 'bad-cl':
      return Buffer.from(post(`Content-Length: ${rng.pick(['+5', '-1', '5 5', '0x5', '5,6', '', '5.0', '1e1', '05a'])}\r\n`, `hello${nested}`), 'latin1')
    case 'obs-fold':
      return Buffer.from(`GET ${target} HTTP/1.1\r\nHost: fuzz\r\nX-Fold: a\r\n ${rng.pick(['b', 'Content-Length: 5', 'x'])}\r\n\r\n`, 'latin1')
    case 'space-before-colon':
      return Buffer.from(`GET ${target} HTTP/1.1\r\nHost : fuzz\r\n${rng.pick(['Content-Length : 5\r\n', 'Transfer-Encoding : chunked\r\n', ''])}\r\nhello`, 'latin1')
    case 'ctl-in-value':
      return Buffer.from(`GET ${target} HTTP/1.1\r\nHost: fuzz\r\nX-Ctl: a${String.fromCharCode(rng.pick([0, 1, 8, 0x0b, 0x0c, 0x7f, 0x0d]))}b\r\n\r\n`, 'latin1')
    case 'bad-chunk-size':
      return Buffer.from(post('Transfer-Encoding: chunked\r\n', `${rng.pick(['zz', '-1', ' 5', '5 ', '0x5', ''])}\r\nhello\r\n0\r\n\r\n`), 'latin1')
    case 'chunk-overflow':
      return Buffer.from(post('Transfer-Encoding: chunked\r\n', `${rng.pick(['ffffffffffffffffffff', '10000000000000000', '7fffffffffffffff'])}\r\nhello\r\n`), 'latin1')
    case 'bad-header-name':
      return Buffer.from(`GET ${target} HTTP/1.1\r\nHost: fuzz\r\n${rng.pick(['X(A): b', 'X A: b', ': novalue', 'X-\u00e9: b', '\tX: b'])}\r\n\r\n`, 'latin1')
    case 'leading-crlf':
      return Buffer.from(`${rng.pick(['\r\n', '\r\n\r\n', '\n'])}GET ${target} HTTP/1.1\r\nHost: fuzz\r\n\r\n`, 'latin1')
    case 'no-host':
      return Buffer.from(`GET ${target} HTTP/1.1\r\n\r\n`, 'latin1')
    case 'two-hosts':
      return Buffer.from(`GET ${target} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`, 'latin1')
    case 'nul-in-target':
      return Buffer.from(`GET /r/${id}/pl${rng.pick(['\0', '\x7f', ' ', '\t', '#'])}ain HTTP/1.1\r\nHost: fuzz\r\n\r\n`, 'latin1')
    case 'http09':
      return Buffer.from(`GET ${target}\r\n\r\n`, 'latin1')
    case 'huge-cl':
      return Buffer.from(post(`Content-Length: ${rng.pick(['99999999999999999999', '18446744073709551616', '9007199254740993'])}\r\n`, 'hello'), 'latin1')
    default:
      return Buffer.from(post('Transfer-Encoding: chunked\r\n', `5\nhello\n0\n\n${nested}`), 'latin1')
  }
}

/** Malformed requests and smuggling attempts; the client then half-closes, leaves, or waits. */
async function garbage(c: Case): Promise<void> {
  const rng = c.rng
  const variant = rng.weighted(GARBAGE)
  const id = c.run.newId()
  c.sent++
  c.rec.note = variant
  const bytes = garbageBytes(c, variant, id)
  const w = c.open()
  w.reader.expect(false)
  await c.send(w, bytes)
  // Waiting is for requests the proxy must refuse at once: random bytes may be a request's start,
  // and a huge (but legal) length or chunk size is rightly waited for.
  const partial = variant === 'random-bytes' || variant === 'random-text' || variant === 'chunk-overflow' || variant === 'huge-cl'
  const how = rng.weighted([['end', 75], ['destroy', 10], ['wait', 15]] as const)
  if (how === 'destroy') {
    await tick()
    w.destroy(rng.chance(0.5))
    c.tally('left')
    return
  }
  // Waiting for a request that may be incomplete would only wait for the bound.
  if (how === 'end' || partial) w.end()
  const closed = await w.untilClosed()
  const spec = handMade(id, 'GET', variant)
  const answers = w.reader.answers
  const outcome = c.judge(spec, answers[0], w, [spec])
  // The proxy took it for a request and the upstream never answered: do they frame it differently?
  if (outcome === '504' || outcome === 'malformed') c.unexpected(`${variant} -> ${outcome}`, `${describeCase(c.rec, true)}`)
  for (let i = 1; i < answers.length; i++) {
    c.checkLeak(spec, answers[i]!, [spec])
    c.tally('extra-answer')
  }
  // Waiting, a request that was valid after all (leading CRLF) is answered and kept alive, rightly.
  const last = answers[answers.length - 1]
  const kept = how === 'wait' && !partial && last?.complete === true && !/close/i.test(last.headers.get('connection') ?? '')
  if (!closed && !kept) c.unexpected(`${variant}: the connection stayed open (${how === 'end' || partial ? 'after the client half-closed' : 'waiting'})`, w.written().slice(0, 200))
}

/** Valid requests with bare LF line ends (everywhere, only the blank line, or some lines). */
async function bareLf(c: Case): Promise<void> {
  const eol = c.rng.weighted([['lf', 50], ['last-lf', 25], ['mixed', 25]] as const)
  const spec = c.request({ eol, maxBody: 8192 })
  c.rec.note = eol
  const w = c.open()
  w.reader.expect(spec.method === 'HEAD')
  await c.send(w, bytesOf(spec))
  if (c.rng.chance(0.5)) w.end()
  await w.until(answered(w, 0))
  c.judge(spec, w.reader.answers[0], w, [spec])
  if (w.timedOut) c.unexpected(`${eol}: no answer and no close within ${BOUND_MS} ms`, `id ${spec.id}`)
  await c.finish(w, [spec], false)
}

/** Heads near and past the proxy's 16 KiB limit: one long header, many headers, a long target. */
async function longHeaders(c: Case): Promise<void> {
  const rng = c.rng
  const variant = rng.weighted([['one-big', 40], ['many', 40], ['long-target', 20]] as const)
  const size = rng.int(8_000, 24_000)
  const extra: [string, string][] = []
  let query = ''
  if (variant === 'one-big') extra.push(['X-Big', rng.text(size)])
  else if (variant === 'many') for (let i = rng.int(60, 140); i > 0; i--) extra.push([`X-H${i}`, rng.text(rng.int(10, 200))])
  else query = `?${rng.text(size).replace(/[#%?\\]/g, 'a')}`
  const made = c.request({ kinds: [['plain', 1]], body: 'never', extraHeaders: extra, query })
  const fields = made.head.toString('latin1').split('\r\n').length - 3
  c.rec.note = `${variant}: ${made.head.length} bytes, ${fields} fields`
  // Near the byte limit llhttp's count (names, values, target) and ours (the raw head) differ a little.
  const ok =
    fields > HEADER_COUNT_LIMIT || made.head.length > HEAD_LIMIT + 600 ? ['431'] : made.head.length < HEAD_LIMIT - 600 ? ['200'] : ['200', '431']
  const spec: ReqSpec = { ...made, ok }
  const w = c.open()
  w.reader.expect(spec.method === 'HEAD')
  await c.send(w, bytesOf(spec))
  await w.until(answered(w, 0))
  c.judge(spec, w.reader.answers[0], w, [spec])
  await c.finish(w, [spec], true)
}

const SPECIAL = [0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x00, 0x7f, 0xff, 0x2c, 0x3b, 0x22, 0x2f, 0x30, 0x39, 0x2d, 0x2b]

/** Random edits, mostly in the head: replace, delete, insert a byte, or repeat a line. */
function mutate(rng: Rng, bytes: Buffer, headLength: number): Buffer {
  let b = Buffer.from(bytes)
  for (let n = rng.weighted([[1, 60], [2, 25], [3, 10], [8, 5]] as const); n > 0 && b.length > 0; n--) {
    const at = rng.chance(0.85) ? rng.int(0, Math.min(headLength, b.length) - 1) : rng.int(0, b.length - 1)
    switch (rng.weighted([['random', 35], ['special', 30], ['delete', 15], ['insert', 15], ['repeat-line', 5]] as const)) {
      case 'random':
        b[at] = rng.int(0, 255)
        break
      case 'special':
        b[at] = rng.pick(SPECIAL)
        break
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)])
        break
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), Buffer.from([rng.chance(0.5) ? rng.pick(SPECIAL) : rng.int(0, 255)]), b.subarray(at)])
        break
      case 'repeat-line': {
        const start = b.lastIndexOf('\n', at) + 1
        const end = b.indexOf('\n', at)
        if (end > start) b = Buffer.concat([b.subarray(0, end + 1), b.subarray(start, end + 1), b.subarray(end + 1)])
        break
      }
    }
  }
  return b
}

/** A valid request with random edits, maybe behind a valid one on the same connection. */
async function mutated(c: Case): Promise<void> {
  const rng = c.rng
  const before = c.max >= 2 && rng.chance(0.3) ? c.request({ maxBody: 4096 }) : null
  const base = c.request({ maxBody: 8192 })
  const bytes = mutate(rng, bytesOf(base), base.head.length)
  const method = bytes.toString('latin1', 0, Math.min(bytes.length, 16)).split(' ')[0] ?? ''
  const spec: ReqSpec = { ...base, mutated: true, valid: false }
  const specs = before === null ? [spec] : [before, spec]
  const w = c.open()
  for (const s of specs) w.reader.expect((s === spec ? method : s.method) === 'HEAD')
  await c.send(w, before === null ? bytes : Buffer.concat([bytesOf(before), bytes]))
  // An edit can make the proxy wait for more (a longer Content-Length): the half-close ends that.
  if (rng.chance(0.85)) w.end()
  await w.until(answered(w, specs.length - 1))
  for (let i = 0; i < specs.length; i++) {
    const outcome = c.judge(specs[i]!, w.reader.answers[i], w, specs)
    if (specs[i] === spec && (outcome === '504' || outcome === 'malformed')) c.unexpected(`mutated request -> ${outcome}`, describeCase(c.rec, true))
  }
  w.destroy()
  await w.untilClosed()
  const answers = w.reader.answers
  for (let i = specs.length; i < answers.length; i++) {
    c.checkLeak(spec, answers[i]!, specs)
    c.tally('extra-answer')
  }
}

/**
 * Clients that leave at every stage: inside the head, after it, inside the body, after the whole
 * request, inside the answer, or between pipelined answers; by FIN, RST or a plain close.
 */
async function leaving(c: Case): Promise<void> {
  const rng = c.rng
  const stage = rng.weighted([['cut-head', 25], ['after-head', 10], ['cut-body', 15], ['after-request', 20], ['mid-answer', 20], ['pipeline-cut', 10]] as const)
  const how = rng.weighted([['destroy', 45], ['reset', 20], ['end', 35]] as const)
  c.rec.note = `${stage} by ${how}`
  const w = c.open()
  const leave = async (spec: ReqSpec, ok: readonly string[] | null, i = 0): Promise<void> => {
    if (how !== 'end') {
      w.destroy(how === 'reset')
      c.tally('left')
      return
    }
    w.end()
    await w.until(answered(w, i))
    c.judge({ ...spec, ok }, w.reader.answers[i], w, [spec])
    if (!(await w.untilClosed())) c.unexpected(`${stage}: no close after the client half-closed`, `id ${spec.id}`)
  }
  switch (stage) {
    case 'cut-head': {
      const spec = c.request()
      w.reader.expect(spec.method === 'HEAD')
      w.write(spec.head.subarray(0, rng.int(1, spec.head.length - 1)))
      await tick()
      return leave(spec, ['closed', '400'])
    }
    case 'after-head':
    case 'cut-body': {
      const spec = c.request({ body: 'always', minBody: 2 })
      w.reader.expect(false)
      w.write(spec.head)
      if (stage === 'cut-body') await c.send(w, spec.body.subarray(0, rng.int(1, spec.body.length - 1)), 2)
      await tick()
      // An upstream may have answered already (kind `early`); else the proxy just closes.
      return leave(spec, null)
    }
    case 'after-request': {
      const spec = c.request()
      w.reader.expect(spec.method === 'HEAD')
      await c.send(w, bytesOf(spec))
      // A half-close after a whole request still gets its answer (as node:http gives it).
      return leave(spec, KINDS[spec.kind]!.ok.concat(spec.method === 'HEAD' ? ['200'] : []))
    }
    case 'mid-answer': {
      const kind = rng.weighted([['large', 40], ['chunked', 20], ['slow', 20], ['plain', 20]] as const)
      const spec = c.request({ body: 'never', kinds: [[kind, 1]] })
      w.reader.expect(spec.method === 'HEAD')
      await c.send(w, bytesOf(spec))
      const after = rng.int(1, kind === 'large' ? LARGE : 200)
      await w.until(() => w.received >= after || w.reader.answers[0]?.complete === true)
      return leave(spec, KINDS[kind]!.ok.concat(spec.method === 'HEAD' ? ['200'] : []))
    }
    case 'pipeline-cut': {
      const n = rng.int(2, 4)
      const specs: ReqSpec[] = []
      for (let i = 0; i < n; i++) specs.push(c.request({ body: 'never' }))
      for (const s of specs) w.reader.expect(s.method === 'HEAD')
      w.write(Buffer.concat(specs.map(bytesOf)))
      await w.until(answered(w, 0))
      c.judge(specs[0]!, w.reader.answers[0], w, specs)
      if (endsConnection(specs[0]!, w.reader.answers[0])) {
        w.destroy()
        return
      }
      if (how !== 'end') {
        w.destroy(how === 'reset')
        c.tally('left')
        return
      }
      w.end()
      await w.untilClosed()
      for (let i = 1; i < n; i++) c.judge({ ...specs[i]!, ok: null }, w.reader.answers[i], w, specs, 'closed-after-client-end')
    }
  }
}

function upgradeHead(rng: Rng, path: string): Buffer {
  const conn = rng.pick(['Upgrade', 'upgrade', 'keep-alive, Upgrade', 'Upgrade, HTTP2-Settings'])
  const key = rng.bytes(16).toString('base64')
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: fuzz\r\nConnection: ${conn}\r\nUpgrade: websocket\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`, 'latin1')
}

/** WebSocket upgrades the upstream accepts, then echoes; the client may leave at any stage. */
async function upgradeAccepted(c: Case): Promise<void> {
  const rng = c.rng
  const id = c.run.newId()
  c.sent++
  const path = rng.chance(0.2) ? `/ws-slow/${id}` : `/ws-accept/${id}`
  const head = upgradeHead(rng, path)
  const early = rng.chance(0.3) ? Buffer.concat([Buffer.from(`id=${id};`), rng.bytes(rng.int(0, 500))]) : EMPTY
  const payload = Buffer.concat([Buffer.from(`id=${id};`), rng.bytes(rng.int(1, 4000))])
  const stage = rng.weighted([['full', 64], ['cut-head', 8], ['before-101', 8], ['half-close', 6], ['after-101', 7], ['mid-echo', 7]] as const)
  const how = rng.weighted([['destroy', 50], ['reset', 20], ['end', 30]] as const)
  c.rec.note = `${path.split('/')[1]} ${stage} by ${how}${early.length > 0 ? ', bytes after the head' : ''}`
  const spec = handMade(id, 'GET', 'ws-accept', { mutated: false, valid: true, ok: ['101'] })
  const w = c.open()
  w.reader.expect(false)
  if (stage === 'cut-head') {
    w.write(head.subarray(0, rng.int(1, head.length - 1)))
    await tick()
    if (how !== 'end') return void w.destroy(how === 'reset')
    w.end()
    await w.untilClosed()
    c.judge({ ...spec, ok: ['closed', '400'] }, w.reader.answers[0], w, [spec])
    return
  }
  await c.send(w, Buffer.concat([head, early]))
  if (stage === 'before-101') return void w.destroy(how === 'reset')
  if (stage === 'half-close') {
    w.end()
    if (!(await w.untilClosed())) c.unexpected('no close after the client half-closed an upgrade')
    c.judge({ ...spec, ok: null }, w.reader.answers[0], w, [spec])
    return
  }
  await w.until(() => w.reader.answers.length > 0 || w.reader.malformed !== null)
  const a = w.reader.answers[0]
  c.judge(spec, a, w, [spec])
  if (a?.status !== 101) return void w.destroy()
  if (stage === 'after-101') {
    if (how !== 'end') return void w.destroy(how === 'reset')
    w.end()
    if (!(await w.untilClosed())) c.unexpected('tunnel not closed after the client half-closed it')
    return
  }
  await c.send(w, payload)
  if (stage === 'mid-echo') return void w.destroy(how === 'reset')
  const want = Buffer.concat([early, payload])
  await w.until(() => w.reader.tunnelBytes >= want.length, 500)
  const got = Buffer.concat(w.reader.tunnel)
  if (got.equals(want)) c.tally('echo-ok')
  else if (got.length < want.length) {
    c.tally('echo-short')
    c.unexpected(`tunnel echo short: ${got.length} of ${want.length} bytes`, `id ${id}`)
  } else {
    const text = got.toString('latin1')
    const other = [...text.matchAll(MARKER)].map((m) => m[1]!).find((x) => x !== id)
    c.run.leak(other !== undefined ? 'crossed' : 'corrupt', `${c.rec.tag} tunnel ${id} echoed ${got.length} bytes for ${want.length}${other !== undefined ? `, with ${other}` : ''}`)
  }
  if (w.closed) return
  if (how === 'end') {
    w.end()
    if (!(await w.untilClosed())) c.unexpected('tunnel not closed after the client half-closed it')
  } else w.destroy(how === 'reset')
}

/** Upgrades the upstream declines (on its raw socket), cannot take, or that are no upgrade at all. */
async function upgradeDeclined(c: Case): Promise<void> {
  const rng = c.rng
  const variant = rng.weighted([
    ['decline', 25],
    ['decline-close', 15],
    ['decline-body', 15],
    ['reset', 10],
    ['nowhere', 5],
    ['behind', 10],
    ['connect', 8],
    ['no-connection', 6],
    ['followed', 6],
  ] as const)
  const stage = rng.weighted([['full', 80], ['cut-head', 8], ['before-answer', 7], ['half-close', 5]] as const)
  c.rec.note = `${variant} ${stage}`
  const id = c.run.newId()
  c.sent++
  const ok: Record<typeof variant, readonly string[]> = {
    decline: ['404'],
    'decline-close': ['404'],
    'decline-body': ['404'],
    reset: ['502'],
    nowhere: ['502'],
    behind: ['200'],
    // Refused either way: as an upgrade we do not tunnel (405) or as a target that is not a path (400).
    connect: ['405', '400'],
    'no-connection': ['404'],
    followed: ['404'],
  }
  const w = c.open()
  let spec = handMade(id, 'GET', `ws-${variant}`, { mutated: false, valid: true, ok: ok[variant] })
  let specs = [spec]
  let bytes: Buffer
  switch (variant) {
    case 'behind': {
      // An upgrade pipelined behind a request in flight: the request's answer comes first.
      const first = c.request({ body: 'never', kinds: [['slow', 1]], version: '1.1' })
      spec = { ...first, ok: ['200'] }
      specs = [spec, handMade(id, 'GET', 'ws-accept', { mutated: false, valid: false })]
      bytes = Buffer.concat([bytesOf(first), upgradeHead(rng, `/ws-accept/${id}`)])
      break
    }
    case 'connect':
      bytes = Buffer.from('CONNECT fuzz:443 HTTP/1.1\r\nHost: fuzz:443\r\n\r\n', 'latin1')
      break
    case 'no-connection':
      bytes = Buffer.from(`GET /ws-accept/${id} HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n\r\n`, 'latin1')
      break
    case 'followed':
      specs = [spec, handMade(c.run.newId(), 'GET', 'plain', { mutated: false, valid: false })]
      bytes = Buffer.concat([upgradeHead(rng, `/ws-decline/${id}`), Buffer.from(`GET /r/${specs[1]!.id}/plain HTTP/1.1\r\nHost: fuzz\r\n\r\n`, 'latin1')])
      break
    default:
      bytes = upgradeHead(rng, `/ws-${variant}/${id}`)
  }
  for (const s of specs) w.reader.expect(s.method === 'HEAD')
  if (stage === 'cut-head') {
    w.write(bytes.subarray(0, rng.int(1, bytes.length - 1)))
    await tick()
    if (rng.chance(0.5)) return void w.destroy()
    w.end()
    await w.untilClosed()
    c.judge({ ...spec, ok: null }, w.reader.answers[0], w, specs)
    return
  }
  await c.send(w, bytes)
  if (stage === 'before-answer') return void w.destroy(rng.chance(0.3))
  if (stage === 'half-close') w.end()
  await w.until(answered(w, 0))
  c.judge(stage === 'half-close' ? { ...spec, ok: null } : spec, w.reader.answers[0], w, specs)
  const a = w.reader.answers[0]
  if (variant === 'decline-body' && a?.status === 404 && a.complete && a.body.toString('latin1') !== `id=${id};declined\n`) {
    c.unexpected('declined upgrade: body not as sent', JSON.stringify(a.body.toString('latin1').slice(0, 80)))
  }
  if (variant === 'no-connection') return void w.destroy()
  // A declined (or refused) upgrade ends its connection: the client must see the close.
  if (!(await w.untilClosed())) c.unexpected(`${variant}: connection left open after the answer`, `id ${id}`)
  const answers = w.reader.answers
  for (let i = 1; i < answers.length; i++) {
    c.checkLeak(specs[Math.min(i, specs.length - 1)]!, answers[i]!, specs)
    c.tally(`then ${outcomeOf(answers[i], w)}`)
  }
}

type FamilyRun = (c: Case) => Promise<void>

/** Every family, its weight among cases, and what it does. */
const FAMILIES: Readonly<Record<string, { readonly weight: number; readonly run: FamilyRun }>> = {
  sequential: { weight: 18, run: (c) => sequential(c, 'maybe') },
  body: { weight: 10, run: (c) => sequential(c, 'always') },
  pipeline: { weight: 14, run: pipeline },
  expect: { weight: 4, run: expectContinue },
  garbage: { weight: 8, run: garbage },
  'bare-lf': { weight: 4, run: bareLf },
  mutated: { weight: 12, run: mutated },
  'long-headers': { weight: 3, run: longHeaders },
  leaving: { weight: 14, run: leaving },
  'upgrade-accepted': { weight: 6, run: upgradeAccepted },
  'upgrade-declined': { weight: 5, run: upgradeDeclined },
}
const FAMILY_WEIGHTS = Object.entries(FAMILIES).map(([k, v]) => [k, v.weight] as const)

// ---------------------------------------------------------------------------------------------
// The run.

async function runCase(run: Run, port: number, w: number, k: number, max: number, only?: ReadonlySet<string>): Promise<number> {
  const rng = new Rng(mix(run.seed, w, k))
  const family = rng.weighted(FAMILY_WEIGHTS)
  if (only !== undefined && !only.has(family)) return 0
  const c = new Case(run, rng, port, `w${w}#${k}`, family, max)
  const t0 = performance.now()
  run.started(c.rec)
  try {
    await FAMILIES[family]!.run(c)
  } catch (err) {
    c.unexpected(`harness error: ${(err as Error).message}`)
  } finally {
    for (const wire of c.rec.wires) wire.destroy()
    run.open.delete(c.rec)
  }
  const sent = Math.max(1, c.sent)
  const f = run.family(family)
  f.cases++
  f.requests += sent
  const ms = performance.now() - t0
  f.ms += ms
  if (ms >= 1_000) f.slow++
  run.requests += sent
  return sent
}

async function finalGet(run: Run, port: number): Promise<number | null> {
  const id = run.newId()
  const w = new Wire(port, BOUND_MS, () => {})
  w.reader.expect(false)
  w.write(`GET /r/${id}/plain HTTP/1.1\r\nHost: fuzz\r\n\r\n`)
  await w.until(answered(w, 0))
  w.destroy()
  const a = w.reader.answers[0]
  if (a === undefined || !a.complete) return null
  const spec = handMade(id, 'GET', 'plain', { mutated: false, valid: true })
  if (a.headers.get('x-id') !== id || a.body.toString('latin1') !== answerBody(id, 'plain', 0, sha1(EMPTY))) {
    run.leak('crossed', `the final GET /r/${id}/plain got ${a.status} x-id ${a.headers.get('x-id')} ${JSON.stringify(a.body.toString('latin1').slice(0, 80))} (${spec.kind})`)
  }
  return a.status
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzResult> {
  const log = opts.log ?? (() => {})
  const concurrency = Math.max(1, opts.concurrency ?? 128)
  const only = opts.families === undefined || opts.families.length === 0 ? undefined : new Set(opts.families)
  for (const f of only ?? []) if (FAMILIES[f] === undefined) throw new Error(`no family ${f}; the families are ${Object.keys(FAMILIES).join(', ')}`)
  const run = new Run(opts.seed >>> 0, log)
  const upstreamStats: UpstreamStats = { requests: 0, upgrades: 0, nested: 0, cut: 0, malformed: {} }
  const upstreams = [await startUpstream(upstreamStats, run.nested), await startUpstream(upstreamStats, run.nested)]
  const child = await startProxyChild(upstreams.map((u) => u.port))
  let crash: FuzzResult['crash'] = null
  child.onExit = () => {
    const lastCases = [...new Set([...run.open, ...run.recent])].map((rec) => describeCase(rec))
    crash = { code: child.exit?.code ?? null, signal: child.exit?.signal ?? null, output: child.output(), lastCases }
    log(`PROXY CHILD EXITED (seed ${run.seed}): code ${crash.code}, signal ${crash.signal}`)
    run.stop()
  }
  const started = performance.now()
  let lastAt = started
  let lastCount = 0
  const progress = setInterval(() => {
    const now = performance.now()
    const rate = Math.round(((run.requests - lastCount) * 1000) / (now - lastAt))
    ;[lastAt, lastCount] = [now, run.requests]
    log(`  ${run.requests}/${opts.requests} requests, ${rate}/s, crossed ${run.crossed}, corrupt ${run.corrupt}`)
  }, 10_000)
  try {
    if (opts.cases !== undefined && opts.cases.length > 0) {
      for (const tag of opts.cases) {
        const m = /^w(\d+)#(\d+)$/.exec(tag)
        if (m === null) throw new Error(`--case wants w<worker>#<case>, got ${tag}`)
        await runCase(run, child.port, Number(m[1]), Number(m[2]), 5)
      }
    } else {
      const workers: Promise<void>[] = []
      for (let w = 0; w < concurrency; w++) {
        const quota = Math.floor(opts.requests / concurrency) + (w < opts.requests % concurrency ? 1 : 0)
        workers.push(
          (async () => {
            for (let k = 0, sent = 0; sent < quota && !run.stopped; k++) sent += await runCase(run, child.port, w, k, quota - sent, only)
          })(),
        )
      }
      await Promise.all(workers)
    }
  } finally {
    clearInterval(progress)
  }
  const seconds = (performance.now() - started) / 1000
  // A parser is freed a turn after its close: a crash from that comes just after the last case.
  await sleep(300)
  const finalStatus = crash === null ? await finalGet(run, child.port) : null
  // The proxy closes idle client connections after 5 s (KEEP_ALIVE_TIMEOUT_MS, swept each second)
  // and idle upstream ones after 4 s: a socket still open after that is held by something.
  await sleep(crash === null ? 6_500 : 0)
  const stats = await child.stats()
  const openUpstream = upstreams.reduce((n, u) => n + u.open, 0)
  await child.stop()
  await Promise.all(upstreams.map((u) => u.close()))
  const unexpected = [...run.unexpected].map(([what, u]) => ({ what, count: u.count, example: u.example })).sort((a, b) => b.count - a.count)
  return {
    seed: run.seed,
    requests: run.requests,
    seconds,
    perSecond: run.requests / seconds,
    crash,
    crossed: run.crossed,
    crossedSameConnection: run.crossedSameConnection,
    corrupt: run.corrupt,
    leaks: run.leaks,
    finalStatus,
    families: run.families,
    unexpected,
    upstream: {
      requests: upstreamStats.requests,
      upgrades: upstreamStats.upgrades,
      malformed: upstreamStats.malformed,
      cut: upstreamStats.cut,
      nested: upstreamStats.nested,
      openConnections: openUpstream,
    },
    proxy: stats === null ? null : { rssMB: Math.round(stats.rss / 1048576), sockets: stats.sockets },
    connectErrors: run.connectErrors,
    ok: crash === null && run.crossed === 0 && run.corrupt === 0 && finalStatus === 200,
  }
}

/** The result as the lines `npm run fuzz` prints. */
export function report(r: FuzzResult): string[] {
  const lines: string[] = []
  const pad = (s: string | number, n: number) => String(s).padEnd(n)
  lines.push('', `${pad('family', 18)}${pad('cases', 9)}${pad('requests', 10)}${pad('ms/case', 9)}${pad('>=1s', 7)}outcomes`)
  for (const [name, f] of Object.entries(r.families).sort((a, b) => b[1].requests - a[1].requests)) {
    const outcomes = Object.entries(f.outcomes)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k}:${v}`)
      .join(' ')
    lines.push(`${pad(name, 18)}${pad(f.cases, 9)}${pad(f.requests, 10)}${pad((f.ms / Math.max(1, f.cases)).toFixed(1), 9)}${pad(f.slow, 7)}${outcomes}`)
  }
  lines.push('')
  lines.push(`upstreams: ${r.upstream.requests} requests, ${r.upstream.upgrades} upgrades, ${r.upstream.openConnections} connections open at the end`)
  lines.push(`  malformed requests from the proxy: ${JSON.stringify(r.upstream.malformed)}; cut off mid-request: ${r.upstream.cut}; smuggled requests that reached them: ${r.upstream.nested}`)
  lines.push(`proxy child: ${r.crash === null ? 'alive' : 'EXITED'}${r.proxy === null ? '' : `, rss ${r.proxy.rssMB} MB, ${r.proxy.sockets} sockets open at the end`}`)
  if (Object.keys(r.connectErrors).length > 0) lines.push(`client connect errors: ${JSON.stringify(r.connectErrors)}`)
  if (r.unexpected.length > 0) {
    lines.push('', 'unexpected outcomes (count, what, first example):')
    for (const u of r.unexpected.slice(0, 40)) lines.push(`  ${pad(u.count, 8)}${u.what}  [${u.example.slice(0, 2000)}]`)
  }
  if (r.leaks.length > 0) lines.push('', 'leaks:', ...r.leaks.map((l) => `  ${l.slice(0, 3000)}`))
  if (r.crash !== null) {
    lines.push('', `THE PROXY CHILD EXITED: code ${r.crash.code}, signal ${r.crash.signal}`, 'its last output:', r.crash.output, 'cases open or recent:')
    lines.push(...r.crash.lastCases.map((l) => `  ${l}`))
  }
  lines.push('')
  lines.push(
    `crash: ${r.crash === null ? 'none' : 'YES'}; crossed: ${r.crossed} (same connection: ${r.crossedSameConnection}); corrupt: ${r.corrupt}; final GET: ${r.finalStatus ?? 'no answer'}`,
  )
  lines.push(`${r.requests} requests in ${r.seconds.toFixed(1)} s, ${Math.round(r.perSecond)} requests/s (seed ${r.seed})`)
  lines.push(r.ok ? 'OK' : 'FAIL')
  return lines
}

function argValue(args: readonly string[], name: string): string | undefined {
  const at = args.indexOf(name)
  return at >= 0 ? args[at + 1] : undefined
}

/**
 * The control side's families (issue 21): not requests through the proxy's listener but the admin
 * listener (scripts/fuzz-admin.ts) and znode data fed to the codecs (scripts/fuzz-znode.ts), each a
 * run of its own after the request families, from the same seed. Their cases are `a#N` and `z#N`.
 */
const CONTROL_FAMILIES = ['admin', 'znode']

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  if (args[0] === '--proxy-child') return proxyChild(args.slice(1).map(Number))
  if (args.includes('--help')) {
    console.log('npm run fuzz -- [--requests N (1000000)] [--seed S (random)] [--concurrency C (128)] [--family F ...] [--case w<worker>#<case> | a#<case> | z#<case> ...]')
    console.log(`families: ${[...Object.keys(FAMILIES), ...CONTROL_FAMILIES].join(', ')}`)
    console.log('admin and znode run after the others, requests/50 and requests/10 cases; alone (--family admin), --requests cases')
    return
  }
  const requests = Number(argValue(args, '--requests') ?? 1_000_000)
  const seed = Number(argValue(args, '--seed') ?? randomInt(1, 2 ** 31 - 1))
  const concurrency = Number(argValue(args, '--concurrency') ?? 128)
  const allCases = args.flatMap((a, i) => (args[i - 1] === '--case' ? [a] : []))
  const allFamilies = args.flatMap((a, i) => (args[i - 1] === '--family' ? [a] : []))
  if (![requests, seed, concurrency].every((n) => Number.isInteger(n) && n >= 0)) throw new Error('--requests, --seed and --concurrency take whole numbers')
  const control = (f: string) => CONTROL_FAMILIES.includes(f)
  const families = allFamilies.filter((f) => !control(f))
  const cases = allCases.filter((c) => !/^[az]#/.test(c))
  const caseNumbers = (prefix: string) => allCases.flatMap((c) => (c.startsWith(`${prefix}#`) ? [Number(c.slice(2))] : []))
  // What runs: everything by default; else the families and cases named.
  const named = allFamilies.length > 0 || allCases.length > 0
  const runs = (family: string, prefix: string) => !named || allFamilies.includes(family) || caseNumbers(prefix).length > 0
  const alone = named && families.length === 0 && cases.length === 0
  console.log(`fuzz: seed ${seed} (replay: npm run fuzz -- --seed ${seed} --requests ${requests} --concurrency ${concurrency})`)
  let ok = true
  if (!alone) {
    const result = await runFuzz({ requests, seed, concurrency, cases, families, log: (line) => console.log(line) })
    for (const line of report(result)) console.log(line)
    ok &&= result.ok
  }
  if (runs('admin', 'a')) {
    const only = caseNumbers('a')
    const r = await runAdminFuzz({ cases: alone ? requests : Math.max(200, Math.round(requests / 50)), seed, ...(only.length > 0 ? { only } : {}) })
    for (const line of adminReport(r)) console.log(line)
    ok &&= r.ok
  }
  if (runs('znode', 'z')) {
    const only = caseNumbers('z')
    const r = runZnodeFuzz({ cases: alone ? requests : Math.max(1000, Math.round(requests / 10)), seed, ...(only.length > 0 ? { only } : {}) })
    for (const line of znodeReport(r)) console.log(line)
    ok &&= r.ok
  }
  process.exitCode = ok ? 0 : 1
}

const entry = process.argv[1] === undefined ? '' : realpathSync(process.argv[1])
if (entry === SELF) await main()
