// The `admin` family of `npm run fuzz` (issue 21): what a client of the admin port can do to the
// proxy. Two real proxies run in a child process (this file with --admin-child; ZooKeeper
// unreachable, instances fed as snapshots), one admin listener with a token and one without.
// Raw sockets send seeded requests: methods valid, odd and invalid; paths near every endpoint with
// %-escapes good and bad (a lone %, one hex digit, overlong UTF-8 such as %C0%AF, surrogates,
// cut sequences), queries, absolute forms; Authorization in every shape (Bearer, Basic, cut,
// padded, doubled, huge); bodies of random JSON shapes, numbers past every edge, wrong types,
// deep nesting, bytes, over the 4 KiB limit, fixed-length or chunked.
//
// Judged: every answer is well-formed HTTP/1.1 and below 500, but for the documented 503 of
// /readyz (not ready: ZooKeeper is down); no connection is left without an answer; the child
// never exits; both listeners answer /healthz at the end. Case `a#N` replays alone from the seed.

import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { Buffer } from 'node:buffer'
import { realpathSync } from 'node:fs'
import process from 'node:process'
import { fileURLToPath } from 'node:url'
import { createLogger, createProxy, validateConfig } from '../lib/index.js'
import { Rng, Wire, mix } from './fuzz-wire.js'

const SELF = fileURLToPath(import.meta.url)
const TOKEN = 'fuzz-Token_0123'
/** No connection lives longer; one still unanswered then is counted `timeout`. */
const BOUND_MS = 3_000
/** The instances each service has (their ports are never connected to). */
const INSTANCES = ['127.0.0.1:18001', '127.0.0.1:18002', '[::1]:18003']

export interface AdminFuzzOptions {
  readonly cases: number
  readonly seed: number
  readonly concurrency?: number
  /** Only these case numbers (a replay of `a#N`). */
  readonly only?: readonly number[]
}

export interface AdminFuzzResult {
  readonly seed: number
  readonly cases: number
  readonly requests: number
  /** `<listener> <status>` (or `closed`, `timeout`, `malformed`), counted. */
  readonly outcomes: Readonly<Record<string, number>>
  readonly unexpected: readonly { readonly what: string; readonly count: number; readonly example: string }[]
  readonly crash: { readonly code: number | null; readonly signal: string | null; readonly output: string } | null
  /** /healthz after the run, per listener (null: no answer). */
  readonly healthz: { readonly open: number | null; readonly token: number | null }
  readonly ok: boolean
}

// ---------------------------------------------------------------------------------------------
// The proxies under test, in a child process.

async function adminChild(): Promise<void> {
  const ports: number[] = []
  for (const token of [undefined, TOKEN]) {
    const config = await validateConfig(
      {
        listen: '127.0.0.1:0',
        admin: { listen: '127.0.0.1:0', ...(token === undefined ? {} : { token }) },
        zookeeper: { connect: '127.0.0.1:1' },
        log: { level: 'silent' },
        services: [
          { name: 's', path: '/s' },
          { name: 'w', path: '/w', strategy: 'weighted', match: { pathPrefix: '/w' } },
        ],
      },
      process.cwd(),
    )
    const proxy = await createProxy(config, { logger: createLogger('silent') })
    for (const name of ['s', 'w']) {
      proxy.applySnapshot(
        name,
        INSTANCES.map((hp, i) => {
          const colon = hp.lastIndexOf(':')
          return { key: `/${name}/${i}`, host: hp.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(hp.slice(colon + 1)), weight: 1, state: 'up' as const, meta: {} }
        }),
      )
    }
    await proxy.start()
    ports.push(proxy.adminAddress()!.port)
  }
  process.on('disconnect', () => process.exit(0))
  process.send?.({ type: 'listening', ports })
}

interface Child {
  readonly open: number
  readonly token: number
  exit: { code: number | null; signal: string | null } | null
  output(): string
  stop(): Promise<void>
}

async function startChild(): Promise<Child> {
  const proc: ChildProcess = fork(SELF, ['--admin-child'], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: ['--enable-source-maps'] })
  let tail = ''
  const keep = (d: Buffer) => (tail = (tail + d.toString('utf8')).slice(-16 * 1024))
  proc.stdout?.on('data', keep)
  proc.stderr?.on('data', keep)
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const [open, token] = await new Promise<number[]>((resolve, reject) => {
    proc.on('message', (m: { type?: string; ports?: number[] }) => {
      if (m.type === 'listening' && m.ports !== undefined) resolve(m.ports)
    })
    proc.once('exit', (code, signal) => reject(new Error(`the admin child exited while starting (code ${code}, signal ${signal}):\n${tail}`)))
  })
  const child: Child = {
    open: open!,
    token: token!,
    exit: null,
    output: () => tail,
    stop: async () => {
      if (child.exit !== null) return
      proc.kill('SIGKILL')
      await exited
    },
  }
  proc.once('exit', (code, signal) => (child.exit = { code, signal }))
  return child
}

// ---------------------------------------------------------------------------------------------
// Requests.

const METHODS = [
  ['GET', 25], ['PUT', 25], ['DELETE', 10], ['POST', 10], ['HEAD', 5], ['PATCH', 4], ['OPTIONS', 3],
  ['CONNECT', 2], ['TRACE', 2], ['FOO', 2], ['put', 2], ['PROPFIND', 1], ['QUERY', 1],
] as const

const BASES = [
  '/', '/healthz', '/readyz', '/upstreams', '/metrics', '/reload', '/status', '',
  ...INSTANCES.map((hp) => `/services/s/instances/${hp}`),
  ...INSTANCES.map((hp) => `/services/w/instances/${hp}`),
  '/services/nope/instances/127.0.0.1:18001', '/services/s/instances/10.9.9.9:1', '/services/s/instances/', '/services//instances/x',
  '/services/s/instances/a/b', '/services/s', '/services', '*', 'http://admin/healthz', '//healthz', '/healthz/', '/HEALTHZ', '/./upstreams', '/x/../upstreams',
]

/** Escapes good and bad: lone or cut %, non-hex, overlong UTF-8, surrogates, bytes never in UTF-8. */
const ESCAPES = [
  '%', '%%', '%A', '%zz', '%G1', '%E0%A4%A', '%E0%A4', '%C0%AF', '%C0%80', '%E0%80%AF', '%F0%80%80%AF', '%FF', '%FE', '%ED%A0%80', '%80', '%F4%90%80%80',
  '%00', '%0A', '%0D', '%20', '%2F', '%2f', '%25', '%3A', '%5B', '%5D', '%3F', '%23', '%41', '%E2%82%AC', '%F0%9F%98%80', '%u0041', '%%41', '%2', '%-1',
]

/** Bytes of a request line that llhttp refuses (or a path it takes as it is). */
const RAW_BYTES = ['\x7f', '\x00', ' ', '\t', '"', '<', '>', '\\', '^', '`', '{', '|', '}', '\xe9', '\xff']

function target(rng: Rng): string {
  let t = rng.pick(BASES)
  for (let i = rng.weighted([[0, 5], [1, 4], [2, 2], [3, 1]] as const); i > 0; i--) {
    const at = rng.int(0, t.length)
    const what = rng.int(0, 9)
    let piece: string
    if (what < 6) piece = rng.pick(ESCAPES)
    else if (what === 6) piece = `%${rng.int(0, 255).toString(16).padStart(2, '0')}`
    else if (what === 7) piece = rng.text(rng.int(1, 12)).replace(/[?#]/g, '')
    else if (what === 8) piece = rng.pick(['/', '//', '/..', '/.', ':', '@', ';', ','])
    else piece = rng.chance(0.2) ? rng.pick(RAW_BYTES) : 'x'.repeat(rng.int(100, 9000))
    t = t.slice(0, at) + piece + t.slice(at)
  }
  if (rng.chance(0.2)) t += `?${rng.pick(['', 'a=1', 'x=%zz', '%', '%C0%AF', '?', 'a=%E0%A4%A&b=%', rng.text(rng.int(1, 30)).replace(/#/g, '')])}`
  return t
}

function basic(pair: string | Buffer): string {
  return `Basic ${Buffer.from(pair).toString('base64')}`
}

/** Authorization in every shape, right or wrong (null: none sent). */
function authorizations(rng: Rng): string[] {
  const one = (): string | null => {
    switch (rng.int(0, 17)) {
      case 0:
      case 1:
        return null
      case 2:
      case 3:
        return `Bearer ${TOKEN}`
      case 4:
        return `bearer   ${TOKEN}  `
      case 5:
        return basic(`ops:${TOKEN}`)
      case 6:
        return basic(`:${TOKEN} `)
      case 7:
        return basic(TOKEN)
      case 8:
        return rng.pick(['Bearer', 'Bearer ', 'Basic', 'Basic ', 'Basic !!!', 'Basic ====', 'Digest x', 'Negotiate', ''])
      case 9:
        return `Bearer ${TOKEN.slice(0, rng.int(0, TOKEN.length - 1))}`
      case 10:
        return `Bearer ${TOKEN}${rng.text(rng.int(1, 3))}`
      case 11:
        return basic(rng.bytes(rng.int(0, 64)))
      case 12:
        return `Basic ${rng.text(rng.int(1, 100))}`
      case 13:
        return `Bearer ${'A'.repeat(rng.int(1, 8_000))}`
      case 14:
        return `Bearer ${TOKEN.toUpperCase()}`
      case 15:
        return basic(`${'u'.repeat(rng.int(0, 3000))}:${TOKEN}`)
      default:
        return rng.text(rng.int(0, 60))
    }
  }
  const first = one()
  if (first === null) return []
  // Sometimes twice: the same, or a wrong one before or after the right one.
  if (rng.chance(0.1)) return rng.chance(0.5) ? [first, first] : [first, one() ?? 'Bearer x']
  return [first]
}

const NUMBERS = [
  '0', '-0', '1', '2.5', '-1', '256', '257', '1e308', '-1e308', '1e309', '1e400', '5e-324', '1e-400', '9007199254740993', '4294967297',
  '"1"', '"1e308"', 'null', 'true', '[]', '{}', '[1]', 'NaN', 'Infinity', '0x10', '01', '1.', '.5', '-', '+1',
]

function numberText(rng: Rng): string {
  if (rng.chance(0.7)) return rng.pick(NUMBERS)
  return `${rng.chance(0.2) ? '-' : ''}${'9'.repeat(rng.int(1, 600))}${rng.chance(0.3) ? `e${rng.int(-500, 500)}` : ''}`
}

/** A JSON text of any shape, `depth` deep at most; values that JSON.stringify cannot write, too. */
function jsonText(rng: Rng, depth: number): string {
  switch (rng.int(0, depth > 0 ? 7 : 4)) {
    case 0:
      return numberText(rng)
    case 1:
      return rng.pick(['null', 'true', 'false'])
    case 2:
      return JSON.stringify(rng.pick(['up', 'draining', 'UP', 'down', '', '\u0000', 'é'.repeat(rng.int(1, 200)), rng.text(rng.int(0, 30))]))
    case 3:
      return rng.pick(['"\\ud800"', '"\\u0000"', '"\\x41"', "'up'", '"unterminated'])
    case 4:
      return rng.text(rng.int(0, 10))
    case 5:
    case 6: {
      const keys = ['weight', 'state', 'weight', 'state', '__proto__', 'constructor', 'Weight', '', rng.text(3)]
      const fields: string[] = []
      for (let i = rng.int(0, 4); i > 0; i--) fields.push(`${JSON.stringify(rng.pick(keys))}:${jsonText(rng, depth - 1)}`)
      return `{${fields.join(',')}}`
    }
    default:
      return `[${Array.from({ length: rng.int(0, 4) }, () => jsonText(rng, depth - 1)).join(',')}]`
  }
}

function body(rng: Rng): Buffer | null {
  switch (rng.weighted([['none', 25], ['override', 35], ['json', 20], ['deep', 4], ['bytes', 6], ['large', 5], ['empty', 5]] as const)) {
    case 'none':
      return null
    case 'override': {
      const fields: string[] = []
      if (rng.chance(0.8)) fields.push(`"weight":${numberText(rng)}`)
      if (rng.chance(0.4)) fields.push(`"state":${rng.pick(['"up"', '"draining"', '"UP"', '"down"', 'null', '1', '[]', '{}'])}`)
      if (rng.chance(0.1)) fields.push(`"extra":${jsonText(rng, 2)}`)
      return Buffer.from(`{${fields.join(',')}}`)
    }
    case 'json':
      return Buffer.from(jsonText(rng, 5))
    case 'deep': {
      const n = rng.int(100, 3000)
      return Buffer.from(`{"weight":${'['.repeat(n)}${']'.repeat(n)}}`)
    }
    case 'bytes':
      return rng.bytes(rng.int(1, 300))
    case 'large':
      return Buffer.from(`{"weight":1,"pad":"${'x'.repeat(rng.int(4000, 20_000))}"}`)
    default:
      return Buffer.alloc(0)
  }
}

const HEADER_NAMES = ['Content-Type', 'Accept', 'X-Forwarded-For', 'Cookie', 'Expect', 'Connection', 'X-Request-Id', 'Origin', 'Range', 'If-None-Match', 'Accept-Encoding']

interface Request {
  readonly method: string
  readonly target: string
  readonly bytes: Buffer
}

function request(rng: Rng, last: boolean): Request {
  const method = rng.weighted(METHODS)
  const t = target(rng)
  const minor = rng.chance(0.1) ? 0 : 1
  const lines = [`${method} ${t} HTTP/1.${minor}`]
  if (minor === 1 || rng.chance(0.5)) lines.push(`Host: ${rng.pick(['admin', '127.0.0.1:9901', 'x'])}`)
  for (const a of authorizations(rng)) lines.push(`Authorization: ${a}`)
  for (let i = rng.int(0, 4); i > 0; i--) {
    const name = rng.chance(0.8) ? rng.pick(HEADER_NAMES) : `X-${rng.text(rng.int(1, 10)).replace(/[^A-Za-z0-9-]/g, 'a')}`
    let value = rng.pick(['application/json', 'text/plain', '*/*', 'keep-alive', 'close', 'gzip', 'bytes=0-1', rng.text(rng.int(0, 80))])
    // A client that asks for 100-continue and then sends its body anyway, as curl does after a second.
    if (name === 'Expect') value = '100-continue'
    // Whether the connection stays open is the framing's business: only the last request may close it.
    if (name === 'Connection' && !last) value = 'keep-alive'
    lines.push(`${name}: ${value}`)
  }
  const b = body(rng)
  const chunked = b !== null && rng.chance(0.2)
  if (b !== null) lines.push(chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${b.length}`)
  let framed: Buffer = b ?? Buffer.alloc(0)
  if (chunked && b !== null) {
    const parts: Buffer[] = []
    for (let at = 0; at < b.length; ) {
      const n = Math.min(b.length - at, rng.int(1, 2048))
      parts.push(Buffer.from(`${n.toString(16)}\r\n`, 'latin1'), b.subarray(at, at + n), Buffer.from('\r\n', 'latin1'))
      at += n
    }
    parts.push(Buffer.from('0\r\n\r\n', 'latin1'))
    framed = Buffer.concat(parts)
  }
  return { method, target: t, bytes: Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), framed]) }
}

// ---------------------------------------------------------------------------------------------
// The run.

interface Tally {
  requests: number
  readonly outcomes: Record<string, number>
  readonly unexpected: Map<string, { count: number; example: string }>
}

function note(t: Tally, what: string, example: string): void {
  const u = t.unexpected.get(what)
  if (u !== undefined) u.count++
  else t.unexpected.set(what, { count: 1, example })
}

/** The documented 5xx: /readyz says 503 while not ready (here: ZooKeeper is down for good). */
function allowedStatus(req: Request, status: number): boolean {
  if (status < 500) return true
  return status === 503 && req.target.split('?')[0] === '/readyz' && (req.method === 'GET' || req.method === 'HEAD')
}

async function runCase(t: Tally, child: Child, seed: number, k: number): Promise<void> {
  const rng = new Rng(mix(seed, 0x61646d6e /* 'admn' */, k))
  const listener = rng.chance(0.5) ? 'token' : 'open'
  const w = new Wire(listener === 'token' ? child.token : child.open, BOUND_MS, () => {})
  const reqs: Request[] = []
  // One to three requests, each sent once the one before it is answered (keep-alive).
  for (let i = 0, n = rng.int(1, 3); i < n; i++) {
    const req = request(rng, i === n - 1)
    reqs.push(req)
    w.reader.expect(req.method === 'HEAD')
    w.write(req.bytes)
    t.requests++
    const answered = await w.until(() => w.reader.answers[i]?.complete === true || w.reader.malformed !== null)
    const a = w.reader.answers[i]
    const example = () => `a#${k} ${listener}: wrote ${w.written().slice(0, 700)}; read ${w.read().slice(0, 500)}`
    let outcome: string
    if (w.reader.malformed !== null) outcome = 'malformed'
    else if (answered && a !== undefined) outcome = String(a.status)
    else outcome = w.timedOut ? 'timeout' : 'closed'
    t.outcomes[`${listener} ${outcome}`] = (t.outcomes[`${listener} ${outcome}`] ?? 0) + 1
    if (outcome === 'malformed') note(t, `malformed answer: ${w.reader.malformed}`, example())
    else if (outcome === 'timeout' || outcome === 'closed') note(t, `${outcome} without an answer (${req.method})`, example())
    else if (!allowedStatus(req, Number(outcome))) note(t, `${outcome} to ${req.method}`, example())
    if (!answered || w.closed || a?.headers.get('connection')?.toLowerCase() === 'close') break
  }
  w.destroy()
}

async function healthz(port: number): Promise<number | null> {
  const w = new Wire(port, BOUND_MS, () => {})
  w.reader.expect(false)
  w.write('GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n')
  await w.until(() => w.reader.answers[0]?.complete === true)
  w.destroy()
  return w.reader.answers[0]?.complete === true ? w.reader.answers[0].status : null
}

export async function runAdminFuzz(opts: AdminFuzzOptions): Promise<AdminFuzzResult> {
  const seed = opts.seed >>> 0
  const child = await startChild()
  const t: Tally = { requests: 0, outcomes: {}, unexpected: new Map() }
  const numbers = opts.only ?? Array.from({ length: opts.cases }, (_, k) => k)
  let next = 0
  const workers = Array.from({ length: Math.max(1, opts.concurrency ?? 16) }, async () => {
    while (next < numbers.length && child.exit === null) await runCase(t, child, seed, numbers[next++]!)
  })
  await Promise.all(workers)
  const health = child.exit === null ? { open: await healthz(child.open), token: await healthz(child.token) } : { open: null, token: null }
  const crash = child.exit === null ? null : { ...child.exit, output: child.output() }
  await child.stop()
  const unexpected = [...t.unexpected].map(([what, u]) => ({ what, count: u.count, example: u.example })).sort((a, b) => b.count - a.count)
  return {
    seed,
    cases: numbers.length,
    requests: t.requests,
    outcomes: t.outcomes,
    unexpected,
    crash,
    healthz: health,
    ok: crash === null && unexpected.length === 0 && health.open === 200 && health.token === 200,
  }
}

/** The result as `npm run fuzz` prints it. */
export function adminReport(r: AdminFuzzResult): string[] {
  const outcomes = Object.entries(r.outcomes)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k}:${v}`)
    .join(' ')
  const lines = [`admin: ${r.cases} cases, ${r.requests} requests (seed ${r.seed}): ${outcomes}`]
  for (const u of r.unexpected.slice(0, 20)) lines.push(`  ${String(u.count).padEnd(8)}${u.what}  [${u.example.slice(0, 1500)}]`)
  if (r.crash !== null) lines.push(`THE ADMIN CHILD EXITED: code ${r.crash.code}, signal ${r.crash.signal}`, r.crash.output)
  lines.push(`admin: /healthz after the run: open ${r.healthz.open ?? 'no answer'}, token ${r.healthz.token ?? 'no answer'}; ${r.ok ? 'OK' : 'FAIL'}`)
  return lines
}

const entry = process.argv[1] === undefined ? '' : realpathSync(process.argv[1])
if (entry === SELF && process.argv[2] === '--admin-child') await adminChild()
