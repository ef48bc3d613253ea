// The `h2` family of `npm run fuzz` (issue 26 §4): hostile HTTP/2 with prior knowledge (h2c) on
// the proxy's plain listener, against the same proxy child and upstreams as the HTTP/1.1 run.
// Each case opens one raw-frame connection (test/support/h2-frames.ts) and plays one scenario:
// well-formed hostile streams (many streams, client resets mid-body, 1-byte windows, trailers,
// bodies over many DATA frames, header lists near the 16 KiB limit, requests the proxy must
// refuse, PING/SETTINGS/PRIORITY bursts and rapid resets below and above the guard's caps), or a
// valid frame sequence mutated at the byte level (flips, inserts, deletes, lengths, unknown types,
// bad stream ids, padding abuse).
//
// The judge, as strict as the HTTP/1.1 one: a stream's answer carrying another request's id
// (crossed), an own 200 whose body is not what the upstream sent for it (corrupt), a 2xx for a
// request that must be refused, an honest stream not answered 200 in a well-formed case, a hang,
// the proxy child exiting, a plain request on a fresh connection afterwards not answered 200,
// sockets left open once the idle timeouts passed, and the harness's own exceptions.
//
// Each case draws from its own PRNG seeded from (seed, case number), so `h#N` replays alone; its
// request ids come from (case, stream) too, so a replay sends the same bytes.

import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import http2 from 'node:http2'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { FLAG, FRAME, RawH2Client, SETTING, build, frame, goawayOf, hpackBlock } from '../test/support/h2-frames.js'
import { Rng, mix } from './fuzz-wire.js'
import { BOUND_MS, CLIENT_IDLE_MS, IDLE_MARGIN_MS } from './fuzz/options.js'
import { startProxyChild } from './fuzz/proxy-child.js'
import { answerBody, startUpstream } from './fuzz/upstreams.js'
import type { UpstreamStats } from './fuzz/upstreams.js'

export interface H2FuzzOptions {
  readonly cases: number
  readonly seed: number
  /** Only these case numbers (a replay of `h#N`). */
  readonly only?: readonly number[]
  /** Cases at once. */
  readonly concurrency?: number
  readonly log?: (line: string) => void
}

export interface H2FuzzResult {
  readonly seed: number
  readonly cases: number
  readonly seconds: number
  /** Per scenario: how its streams ended (`200`, `431`, `rst`, `goaway`, `closed`...), counted. */
  readonly outcomes: Readonly<Record<string, Record<string, number>>>
  readonly crossed: number
  readonly corrupt: number
  readonly leaks: readonly string[]
  readonly unexpected: readonly { readonly what: string; readonly count: number; readonly example: string }[]
  readonly crash: { readonly code: number | null; readonly signal: string | null; readonly output: string } | null
  /** The status of a plain GET on a fresh HTTP/2 connection after the cases (null: none came). */
  readonly finalStatus: number | null
  readonly proxySockets: number | null
  readonly upstreamOpen: number
  readonly malformedUpstream: Readonly<Record<string, number>>
  readonly harnessErrors: readonly string[]
  readonly failures: readonly string[]
  readonly ok: boolean
}

/** The h2 case's request id: from (seed, case, stream) with a check, so a mutated id is never taken for another's. */
function idOf(seed: number, k: number, j: number): string {
  const check = createHash('sha1').update(`${seed}:${k}:${j}`).digest('hex').slice(0, 4)
  return `h${k.toString(36)}x${j.toString(36)}-${check}`
}

const ID_RE = /h([0-9a-z]{1,8})x([0-9a-z]{1,3})-([0-9a-f]{4})/g

/**
 * What a stream of a case must get: `ok` a 200 with its own body, `refuse` anything but a 2xx,
 * `any` whatever (its own body if a 200), `loose` whatever (a mutated request: only no other's id).
 */
type Expect = 'ok' | 'refuse' | 'any' | 'loose'

interface Stream {
  readonly sid: number
  readonly id: string
  readonly expect: Expect
  readonly what: string
  readonly body: Buffer
  status: number | null
  readonly data: Buffer[]
  end: string | null
}

/** :status from the first field of a response header block (the client announced a dynamic table of 0: static or literal only). */
export function statusOf(block: Buffer): number | null {
  let i = 0
  const int = (prefix: number): number => {
    const max = (1 << prefix) - 1
    let v = block[i++]! & max
    if (v < max) return v
    for (let m = 0; i < block.length && m < 28; m += 7) {
      const b = block[i++]!
      v += (b & 0x7f) * 2 ** m
      if ((b & 0x80) === 0) break
    }
    return v
  }
  // Dynamic table size updates (001xxxxx) may come first.
  while (i < block.length && (block[i]! & 0xe0) === 0x20) int(5)
  if (i >= block.length) return null
  const b = block[i]!
  if (b & 0x80) return [200, 204, 206, 304, 400, 404, 500][int(7) - 8] ?? null
  const index = (b & 0xc0) === 0x40 ? int(6) : int(4)
  if (index < 8 || index > 14 || i >= block.length) return null
  const huffman = (block[i]! & 0x80) !== 0
  const len = int(7)
  const raw = block.subarray(i, i + len)
  if (!huffman) return Number(raw.toString('latin1'))
  // Digits in the HPACK Huffman code (RFC 7541 Appendix B): 0-2 in 5 bits, 3-9 as 0x19-0x1f in 6.
  let bits = ''
  for (const x of raw) bits += x.toString(2).padStart(8, '0')
  let out = ''
  for (let p = 0; out.length < 3 && p + 5 <= bits.length; ) {
    const five = parseInt(bits.slice(p, p + 5), 2)
    if (five <= 2) {
      out += String(five)
      p += 5
      continue
    }
    const six = parseInt(bits.slice(p, p + 6), 2)
    if (six < 0x19 || six > 0x1f) return null
    out += String(3 + six - 0x19)
    p += 6
  }
  return out.length === 3 ? Number(out) : null
}

function sha1(b: Buffer): string {
  return createHash('sha1').update(b).digest('hex')
}

/** HEADERS (with CONTINUATION past 16 KiB) for a block; END_STREAM as asked. */
function headerFrames(sid: number, block: Buffer, endStream: boolean): Buffer[] {
  const max = 16_384
  const out: Buffer[] = []
  for (let at = 0, first = true; first || at < block.length; first = false) {
    const part = block.subarray(at, at + max)
    at += part.length
    const last = at >= block.length
    if (first) out.push(frame(FRAME.HEADERS, (endStream ? FLAG.END_STREAM : 0) | (last ? FLAG.END_HEADERS : 0), sid, part))
    else out.push(frame(FRAME.CONTINUATION, last ? FLAG.END_HEADERS : 0, sid, part))
  }
  return out
}

/** A body cut into `pieces` DATA frames, the last one ending the stream unless trailers follow. */
function dataFrames(rng: Rng, sid: number, body: Buffer, pieces: number, endStream: boolean): Buffer[] {
  const out: Buffer[] = []
  const cuts = new Set<number>()
  for (let n = 1; n < pieces; n++) cuts.add(rng.int(1, Math.max(1, body.length - 1)))
  const at = [0, ...[...cuts].filter((c) => c < body.length).sort((a, b) => a - b), body.length]
  for (let n = 0; n + 1 < at.length; n++) out.push(build.data(sid, body.subarray(at[n], at[n + 1]), endStream && n + 2 === at.length))
  if (out.length === 0) out.push(build.data(sid, Buffer.alloc(0), endStream))
  return out
}

const fieldsOf = (id: string, method: string, extra: readonly (readonly [string, string])[] = []): [string, string][] => [
  [':method', method],
  [':scheme', 'http'],
  [':authority', 'fuzz'],
  [':path', `/r/${id}/plain`],
  ...extra.map(([n, v]) => [n, v] as [string, string]),
]

/** The requests the proxy must refuse (RFC 9113 §8.2, §8.3; docs/http2.md "Refused before a byte goes upstream"). */
const REFUSE: readonly (readonly [string, (id: string, body: Buffer) => [string, string][]])[] = [
  ['upper-case name', (id) => fieldsOf(id, 'GET', [['X-Upper', 'v']])],
  ['pseudo after a regular field', (id) => [[':method', 'GET'], [':scheme', 'http'], ['x-a', 'b'], [':authority', 'fuzz'], [':path', `/r/${id}/plain`]]],
  ['repeated :path', (id) => [...fieldsOf(id, 'GET'), [':path', `/r/${id}/plain`]]],
  ['repeated :method', (id) => [[':method', 'GET'], ...fieldsOf(id, 'GET')]],
  ['unknown pseudo-header', (id) => fieldsOf(id, 'GET', [[':proto', 'x']])],
  ['no :path', () => [[':method', 'GET'], [':scheme', 'http'], [':authority', 'fuzz']]],
  ['connection', (id) => fieldsOf(id, 'GET', [['connection', 'keep-alive']])],
  ['keep-alive', (id) => fieldsOf(id, 'GET', [['keep-alive', 'timeout=5']])],
  ['proxy-connection', (id) => fieldsOf(id, 'GET', [['proxy-connection', 'keep-alive']])],
  ['transfer-encoding', (id) => fieldsOf(id, 'POST', [['transfer-encoding', 'chunked']])],
  ['upgrade', (id) => fieldsOf(id, 'GET', [['upgrade', 'websocket']])],
  ['te not trailers', (id) => fieldsOf(id, 'GET', [['te', 'gzip']])],
  ['content-length above DATA', (id, body) => fieldsOf(id, 'POST', [['content-length', String(body.length + 1 + (body.length % 7))]])],
  ['content-length below DATA', (id, body) => fieldsOf(id, 'POST', [['content-length', String(Math.max(0, body.length - 1))]])],
  ['CONNECT', () => [[':method', 'CONNECT'], [':authority', '127.0.0.1:1']]],
  ['extended CONNECT', (id) => [[':method', 'CONNECT'], [':protocol', 'websocket'], [':scheme', 'http'], [':authority', 'fuzz'], [':path', `/r/${id}/plain`]]],
]

/** Served (without the field, which nghttp2 drops) or refused, but never with its bytes upstream. */
const CONTROL_BYTES = ['\r', '\n', '\0', '\r\nx-smuggled: 1', '\nGET /r/x/plain HTTP/1.1\r\n']

interface Case {
  readonly seed: number
  readonly k: number
  readonly rng: Rng
  readonly scenario: string
  readonly client: RawH2Client
  readonly streams: Stream[]
  nextSid: number
  nextJ: number
  note: string
}

class H2Run {
  readonly seed: number
  readonly cases: number
  readonly outcomes: Record<string, Record<string, number>> = {}
  readonly unexpected = new Map<string, { count: number; example: string }>()
  readonly leaks: string[] = []
  readonly harnessErrors: string[] = []
  /** Cases that ended just after a malformed request reached an upstream. */
  readonly malformedCases: string[] = []
  readonly port: number
  crossed = 0
  corrupt = 0
  stopped = false

  constructor(seed: number, cases: number, port: number) {
    this.seed = seed
    this.cases = cases
    this.port = port
  }

  issued(id: string): boolean {
    const m = /^h([0-9a-z]{1,8})x([0-9a-z]{1,3})-([0-9a-f]{4})$/.exec(id)
    if (m === null) return false
    const k = parseInt(m[1]!, 36)
    return k < this.cases && idOf(this.seed, k, parseInt(m[2]!, 36)) === id
  }

  note(what: string, example: string): void {
    const u = this.unexpected.get(what)
    if (u !== undefined) u.count++
    else this.unexpected.set(what, { count: 1, example })
  }

  leak(kind: 'crossed' | 'corrupt', line: string): void {
    this[kind]++
    if (this.leaks.length < 30) this.leaks.push(`${kind}: ${line}`)
  }
}

function stream(c: Case, expect: Expect, what: string, body: Buffer): Stream {
  const s: Stream = { sid: c.nextSid, id: idOf(c.seed, c.k, c.nextJ), expect, what, body, status: null, data: [], end: null }
  c.nextSid += 2
  c.nextJ++
  c.streams.push(s)
  return s
}

/** Reads the frames as they come: answers into their streams, window updates for tiny windows. */
function follow(c: Case, windowUpdates: boolean): void {
  let seen = 0
  const byId = () => new Map(c.streams.map((s) => [s.sid, s]))
  const take = () => {
    const streams = byId()
    for (; seen < c.client.frames.length; seen++) {
      const f = c.client.frames[seen]!
      const s = streams.get(f.streamId)
      if (f.type === FRAME.GOAWAY) {
        const g = goawayOf(f)
        // Streams above the last one taken were never served; after an error GOAWAY none will be.
        for (const t of c.streams) if (t.end === null && (t.sid > g.lastStreamId || g.code !== 0)) t.end = `goaway ${g.name}`
        continue
      }
      if (s === undefined) continue
      if (f.type === FRAME.HEADERS) {
        let block = f.payload
        if (f.flags & FLAG.PADDED) block = block.subarray(1, block.length - block[0]!)
        if (f.flags & FLAG.PRIORITY) block = block.subarray(5)
        if (s.status === null) s.status = statusOf(block) ?? -1
        if (f.flags & FLAG.END_STREAM) s.end ??= 'end'
      } else if (f.type === FRAME.DATA) {
        let payload = f.payload
        if (f.flags & FLAG.PADDED) payload = payload.subarray(1, payload.length - payload[0]!)
        s.data.push(Buffer.from(payload))
        if (windowUpdates && f.payload.length > 0 && s.end === null) c.client.write(build.windowUpdate(s.sid, f.payload.length), build.windowUpdate(0, f.payload.length))
        if (f.flags & FLAG.END_STREAM) s.end ??= 'end'
      } else if (f.type === FRAME.RST_STREAM) {
        s.end ??= `rst ${f.payload.length >= 4 ? f.payload.readUInt32BE(0) : '?'}`
      }
    }
  }
  c.client.socket.on('data', take)
  c.client.socket.on('close', () => {
    take()
    for (const t of c.streams) t.end ??= 'closed'
  })
}

async function until(c: Case, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms
  while (c.streams.some((s) => s.end === null) && !c.client.closed) {
    if (performance.now() > deadline) return false
    await sleep(10)
  }
  return true
}

function honest(c: Case, opts: { expect?: Expect; method?: string; maxBody?: number; trailers?: boolean; pieces?: number; extra?: [string, string][] } = {}): Buffer[] {
  const rng = c.rng
  const method = opts.method ?? rng.pick(['GET', 'POST', 'PUT'])
  const body = method === 'GET' ? Buffer.alloc(0) : rng.bytes(rng.int(0, opts.maxBody ?? 4_000))
  const s = stream(c, opts.expect ?? 'ok', `${method} ${body.length}B`, body)
  const trailers = opts.trailers ?? (method !== 'GET' && rng.chance(0.2))
  const frames = headerFrames(s.sid, hpackBlock(fieldsOf(s.id, method, opts.extra ?? [])), body.length === 0 && !trailers && method === 'GET')
  if (method !== 'GET' || trailers) frames.push(...dataFrames(rng, s.sid, body, opts.pieces ?? rng.int(1, 12), !trailers))
  if (trailers) frames.push(...headerFrames(s.sid, hpackBlock([['x-trailer', 'yes']]), true))
  return frames
}

/** The scenarios, by weight. Each writes its frames and says how long its streams may take. */
const SCENARIOS: Record<string, { weight: number; play: (c: Case) => void }> = {
  many: {
    weight: 20,
    play: (c) => {
      const perStream: Buffer[][] = []
      for (let n = c.rng.int(1, 30); n > 0; n--) {
        const f = honest(c, { maxBody: 1_500 })
        const s = c.streams[c.streams.length - 1]!
        // A client reset mid-body: the stream is cancelled, and it says so.
        if (s.body.length > 1 && f.length > 2 && c.rng.chance(0.15)) {
          perStream.push([...f.slice(0, c.rng.int(1, f.length - 1)), build.rst(s.sid, 8)])
          s.end = 'client reset'
          c.streams[c.streams.length - 1] = { ...s, expect: 'any' }
        } else perStream.push(f)
      }
      // Each stream's HEADERS in order of stream id (RFC 9113 §5.1.1), then, now and then, the
      // rest of the frames interleaved as a multiplexing client sends them, each stream's in order.
      const frames: Buffer[] = perStream.map((f) => f.shift()!)
      if (c.rng.chance(0.5)) {
        while (perStream.some((f) => f.length > 0)) {
          const f = c.rng.pick(perStream.filter((x) => x.length > 0))
          frames.push(f.shift()!)
        }
      } else frames.push(...perStream.flat())
      c.client.write(...frames)
    },
  },
  window: {
    weight: 10,
    play: (c) => {
      for (let n = c.rng.int(1, 4); n > 0; n--) c.client.write(...honest(c, { maxBody: 800, pieces: c.rng.int(1, 40) }))
    },
  },
  bigHeaders: {
    weight: 10,
    play: (c) => {
      const size = c.rng.pick([c.rng.int(1_000, 12_000), c.rng.int(12_000, 20_000), c.rng.int(20_000, 60_000)])
      const fields: [string, string][] = []
      for (let left = size, n = 0; left > 0; n++) {
        const v = Math.min(left, c.rng.int(100, 8_000))
        fields.push([`x-pad-${n}`, 'a'.repeat(v)])
        left -= v + 40
      }
      const expect: Expect = size <= 12_000 ? 'ok' : size >= 20_000 ? 'refuse' : 'any'
      c.client.write(...honest(c, { expect, method: 'GET', extra: fields }))
      if (c.rng.chance(0.5)) c.client.write(...honest(c, { maxBody: 500 }))
    },
  },
  refuse: {
    weight: 20,
    play: (c) => {
      const frames: Buffer[] = []
      if (c.rng.chance(0.5)) frames.push(...honest(c, { maxBody: 500 }))
      if (c.rng.chance(0.25)) {
        const cb = c.rng.pick(CONTROL_BYTES)
        const value = `a${cb}b`
        const s = stream(c, 'any', `control byte ${JSON.stringify(cb)} in a value`, Buffer.alloc(0))
        frames.push(...headerFrames(s.sid, hpackBlock(fieldsOf(s.id, 'GET', [[c.rng.pick(['x-v', 'user-agent', 'cookie']), value]])), true))
      } else {
        const [what, fields] = c.rng.pick(REFUSE)
        const body = c.rng.bytes(c.rng.int(1, 300))
        const s = stream(c, 'refuse', what, body)
        const f = fields(s.id, body)
        const withBody = /content-length|transfer-encoding/.test(what)
        frames.push(...headerFrames(s.sid, hpackBlock(f), !withBody))
        if (withBody) frames.push(...dataFrames(c.rng, s.sid, body, c.rng.int(1, 4), true))
      }
      if (c.rng.chance(0.5)) frames.push(...honest(c, { maxBody: 500 }))
      c.client.write(...frames)
    },
  },
  bursts: {
    weight: 15,
    play: (c) => {
      const kind = c.rng.pick(['ping', 'settings', 'priority', 'reset'])
      const above = c.rng.chance(0.5)
      // The guard's caps (docs/http2.md, Hardening): 10 PINGs, 10 SETTINGS, 100 PRIORITY, 100 resets a second.
      const cap = { ping: 10, settings: 10, priority: 100, reset: 100 }[kind]!
      const n = above ? c.rng.int(cap + 5, cap * 4) : c.rng.int(1, Math.floor(cap / 3))
      const frames: Buffer[] = []
      const expect: Expect = above ? 'any' : 'ok'
      if (c.rng.chance(0.5)) frames.push(...honest(c, { expect, maxBody: 300 }))
      for (let i = 0; i < n; i++) {
        if (kind === 'ping') frames.push(build.ping(Buffer.from(c.rng.bytes(8))))
        else if (kind === 'settings') frames.push(build.settings(c.rng.chance(0.5) ? [] : [[SETTING.ENABLE_PUSH, 0]]))
        else if (kind === 'priority') frames.push(build.priority(c.rng.int(1, 500) * 2 + 1, 0, c.rng.int(0, 255)))
        else {
          const s = stream(c, 'any', 'rapid reset', Buffer.alloc(0))
          frames.push(...headerFrames(s.sid, hpackBlock(fieldsOf(s.id, 'GET')), true), build.rst(s.sid, 8))
          s.end = 'client reset'
        }
      }
      frames.push(...honest(c, { expect, maxBody: 300 }))
      c.client.write(...frames)
    },
  },
  mutated: {
    weight: 25,
    play: (c) => {
      const rng = c.rng
      const frames: Buffer[] = []
      for (let n = rng.int(1, 3); n > 0; n--) {
        frames.push(...honest(c, { expect: 'loose', maxBody: 400, pieces: rng.int(1, 4) }))
        if (rng.chance(0.3)) frames.push(build.ping(Buffer.from(rng.bytes(8))))
      }
      let bytes = Buffer.concat(frames)
      const ops: string[] = []
      for (let m = rng.int(1, 4); m > 0; m--) {
        const at = rng.int(0, Math.max(0, bytes.length - 1))
        const op = rng.pick(['flip', 'insert', 'delete', 'length', 'type', 'sid', 'pad', 'frame'])
        ops.push(`${op}@${at}`)
        if (op === 'flip') bytes[at] = bytes[at]! ^ (1 << rng.int(0, 7))
        else if (op === 'insert') bytes = Buffer.concat([bytes.subarray(0, at), rng.bytes(rng.int(1, 16)), bytes.subarray(at)])
        else if (op === 'delete') bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + rng.int(1, 16))])
        else {
          // A frame of its own, bent: wrong length, unknown type, bad stream id, padding past the payload.
          const payload = rng.bytes(rng.int(0, 40))
          const type = op === 'type' ? rng.int(10, 255) : rng.pick([FRAME.DATA, FRAME.HEADERS, FRAME.PRIORITY, FRAME.RST_STREAM, FRAME.SETTINGS, FRAME.PING, FRAME.WINDOW_UPDATE, FRAME.CONTINUATION])
          const sid = op === 'sid' ? rng.pick([0, 2, 4, 0x7fffffff, rng.int(1, 1000)]) : rng.int(0, 9)
          let f = frame(type, rng.int(0, 255), sid, payload)
          if (op === 'pad') f = frame(rng.pick([FRAME.DATA, FRAME.HEADERS]), FLAG.PADDED | rng.int(0, 255), sid | 1, Buffer.concat([Buffer.from([rng.int(payload.length, 255)]), payload]))
          if (op === 'length') f.writeUIntBE(rng.pick([0, payload.length + rng.int(1, 40), Math.max(0, payload.length - 1), 16_385, 0xffffff]), 0, 3)
          // Between two frames, as far as the bytes still have frames.
          bytes = Buffer.concat([bytes.subarray(0, at), f, bytes.subarray(at)])
        }
      }
      c.note = ops.join(' ')
      c.client.write(bytes)
    },
  },
}

const SCENARIO_WEIGHTS = Object.entries(SCENARIOS).map(([k, v]) => [k, v.weight] as const)

async function runCase(run: H2Run, k: number): Promise<void> {
  const rng = new Rng(mix(run.seed, 0x68327a7a /* 'h2zz' */, k))
  const scenario = rng.weighted(SCENARIO_WEIGHTS)
  const tiny = scenario === 'window'
  const settings: [number, number][] = [[SETTING.HEADER_TABLE_SIZE, 0]]
  if (tiny) settings.push([SETTING.INITIAL_WINDOW_SIZE, rng.int(1, 16)])
  const client = await RawH2Client.connect(run.port, { settings, keep: 100_000 })
  const c: Case = { seed: run.seed, k, rng, scenario, client, streams: [], nextSid: 1, nextJ: 0, note: '' }
  follow(c, tiny)
  try {
    SCENARIOS[scenario]!.play(c)
    if (scenario === 'mutated') {
      // A mutation may leave the server waiting for bytes that never come: a PING after them,
      // answered once the server has read everything, or a short wait, then the write side ends.
      client.write(build.ping(Buffer.from('fuzzdone')))
      // A frame whose length runs past the bytes sent keeps the server waiting, legitimately
      // (HTTP/2 has no frame deadline but the idle one): such a stream ends `unfinished`.
      if (!(await until(c, 1_000))) {
        client.socket.end()
        await until(c, 1_000)
      }
    } else await until(c, BOUND_MS)
    judge(run, c)
  } finally {
    client.close()
    await client.ended(BOUND_MS).catch(() => {})
  }
}

function judge(run: H2Run, c: Case): void {
  const outcomes = (run.outcomes[c.scenario] ??= {})
  const example = (s: Stream) => `h#${c.k} ${c.scenario}${c.note === '' ? '' : ` (${c.note})`}: stream ${s.sid} ${s.what} (${s.expect}) got ${s.status ?? '-'} ${s.end ?? 'no end'}; ${c.client.describe()}`
  for (const s of c.streams) {
    const end = s.end ?? 'hang'
    const outcome = s.status !== null ? String(s.status) : s.end === null && s.expect === 'loose' ? 'unfinished' : end.replace(/ .*$/, '')
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
    const body = Buffer.concat(s.data)
    const text = body.toString('latin1')
    for (const m of text.matchAll(ID_RE)) {
      if (m[0] !== s.id && run.issued(m[0])) run.leak('crossed', `${example(s)}: body carries ${m[0]}`)
    }
    const complete = end === 'end'
    if (s.status === 200 && complete && s.expect !== 'loose' && s.expect !== 'refuse' && text !== answerBody(s.id, 'plain', s.body.length, sha1(s.body))) {
      run.leak('corrupt', `${example(s)}: body ${JSON.stringify(text.slice(0, 200))}`)
    }
    if (s.expect === 'refuse' && s.status !== null && s.status >= 200 && s.status < 300) run.note(`a ${s.status} for a request that must be refused (${s.what})`, example(s))
    if (s.expect === 'ok' && (s.status !== 200 || !complete)) run.note(`an honest stream in a well-formed case got ${s.status ?? end.replace(/ [0-9]+$/, '')}`, example(s))
    if (s.end === null && s.expect !== 'loose') run.note('a stream left unanswered (hang)', example(s))
  }
}

async function finalGet(run: H2Run): Promise<number | null> {
  const id = idOf(run.seed, run.cases, 0)
  const session = http2.connect(`http://127.0.0.1:${run.port}`)
  session.on('error', () => {})
  try {
    return await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), BOUND_MS)
      const req = session.request({ ':path': `/r/${id}/plain` })
      req.on('error', () => resolve(null))
      let status: number | null = null
      const chunks: Uint8Array[] = []
      req.on('response', (h) => (status = Number(h[':status'])))
      req.on('data', (d: Buffer) => chunks.push(d))
      req.on('end', () => {
        clearTimeout(timer)
        const text = Buffer.concat(chunks).toString('latin1')
        if (status === 200 && text !== answerBody(id, 'plain', 0, sha1(Buffer.alloc(0)))) run.leak('crossed', `the final GET got ${JSON.stringify(text.slice(0, 120))}`)
        resolve(status)
      })
      req.end()
    })
  } finally {
    await new Promise<void>((resolve) => session.close(() => resolve()))
  }
}

export async function runH2Fuzz(opts: H2FuzzOptions): Promise<H2FuzzResult> {
  const seed = opts.seed >>> 0
  const log = opts.log ?? (() => {})
  const upstreamStats: UpstreamStats = { requests: 0, upgrades: 0, nested: 0, cut: 0, malformed: {} }
  const upstreams = [await startUpstream(upstreamStats, new Set()), await startUpstream(upstreamStats, new Set())]
  const concurrency = Math.max(1, opts.concurrency ?? 8)
  const child = await startProxyChild(4 * concurrency, upstreams.map((u) => u.port))
  const run = new H2Run(seed, opts.only === undefined ? opts.cases : Math.max(opts.cases, ...opts.only.map((n) => n + 1)), child.port)
  let crash: H2FuzzResult['crash'] = null
  child.onExit = () => {
    crash = { code: child.exit?.code ?? null, signal: child.exit?.signal ?? null, output: child.output() }
    log(`PROXY CHILD EXITED (h2, seed ${seed}): code ${crash.code}, signal ${crash.signal}`)
    run.stopped = true
  }
  const malformedCount = () => Object.values(upstreamStats.malformed).reduce((a, b) => a + b, 0)
  const numbers = opts.only ?? Array.from({ length: opts.cases }, (_, k) => k)
  const started = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < numbers.length && !run.stopped) {
        const k = numbers[next++]!
        const before = malformedCount()
        try {
          await runCase(run, k)
          // Which case it was (or one of the cases open beside it), to replay.
          if (malformedCount() > before && run.malformedCases.length < 10) run.malformedCases.push(`h#${k}`)
        } catch (err) {
          if (!run.stopped) run.harnessErrors.push(`h#${k}: ${(err as Error)?.stack ?? String(err)}`)
        }
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  const finalStatus = crash === null ? await finalGet(run) : null
  // Every case closed its connection: the proxy's sockets (client and pooled upstream) must go
  // once the upstream idle timeout has passed, with a margin for a busy machine.
  const openUpstream = () => upstreams.reduce((n, u) => n + u.open, 0)
  let proxySockets: number | null = null
  if (crash === null) {
    const deadline = performance.now() + Math.max(CLIENT_IDLE_MS, child.upstreamIdleMs) + IDLE_MARGIN_MS
    for (;;) {
      proxySockets = (await child.stats())?.sockets ?? null
      if ((proxySockets === 0 && openUpstream() === 0) || performance.now() > deadline || crash !== null) break
      await sleep(250)
    }
  }
  const upstreamOpen = openUpstream()
  await child.stop()
  await Promise.all(upstreams.map((u) => u.close()))
  const unexpected = [...run.unexpected].map(([what, u]) => ({ what, count: u.count, example: u.example })).sort((a, b) => b.count - a.count)
  const f: string[] = []
  const crashed = crash as H2FuzzResult['crash']
  if (crashed !== null) f.push(`the proxy child exited (code ${crashed.code}, signal ${crashed.signal})`)
  if (run.crossed > 0) f.push(`${run.crossed} streams carried another request's body`)
  if (run.corrupt > 0) f.push(`${run.corrupt} streams carried a body other than their own`)
  for (const u of unexpected) f.push(`${u.count} x ${u.what}`)
  if (finalStatus !== 200) f.push(`a GET on a fresh HTTP/2 connection afterwards got ${finalStatus ?? 'no answer'}`)
  if (run.harnessErrors.length > 0) f.push(`${run.harnessErrors.length} harness errors`)
  if (Object.keys(upstreamStats.malformed).length > 0) f.push(`the proxy sent malformed requests upstream: ${JSON.stringify(upstreamStats.malformed)} (cases ${run.malformedCases.join(' ')})`)
  if (crashed === null && proxySockets !== 0) f.push(`${proxySockets ?? 'unknown'} sockets still open in the proxy after the idle timeouts`)
  if (upstreamOpen > 0) f.push(`${upstreamOpen} upstream connections still open after the idle timeouts`)
  return {
    seed,
    cases: numbers.length,
    seconds,
    outcomes: run.outcomes,
    crossed: run.crossed,
    corrupt: run.corrupt,
    leaks: run.leaks,
    unexpected,
    crash: crashed,
    finalStatus,
    proxySockets,
    upstreamOpen,
    malformedUpstream: upstreamStats.malformed,
    harnessErrors: run.harnessErrors,
    failures: f,
    ok: f.length === 0,
  }
}

/** The result as `npm run fuzz` prints it. */
export function h2Report(r: H2FuzzResult): string[] {
  const lines = ['', `h2: ${r.cases} cases in ${r.seconds.toFixed(1)} s (seed ${r.seed}; replay one: npm run fuzz -- --seed ${r.seed} --case h#N)`]
  for (const [scenario, o] of Object.entries(r.outcomes).sort()) {
    lines.push(`  ${scenario.padEnd(12)}${Object.entries(o).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}:${v}`).join(' ')}`)
  }
  for (const u of r.unexpected.slice(0, 20)) lines.push(`  ${String(u.count).padEnd(8)}${u.what}  [${u.example.slice(0, 1500)}]`)
  for (const l of r.leaks) lines.push(`  ${l.slice(0, 1500)}`)
  if (r.crash !== null) lines.push(`THE PROXY CHILD EXITED: code ${r.crash.code}, signal ${r.crash.signal}`, r.crash.output)
  for (const e of r.harnessErrors.slice(0, 10)) lines.push(`  harness error: ${e.slice(0, 1500)}`)
  lines.push(`h2: crash: ${r.crash === null ? 'none' : 'YES'}; crossed: ${r.crossed}; corrupt: ${r.corrupt}; fresh-connection GET: ${r.finalStatus ?? 'no answer'}; sockets open at the end: proxy ${r.proxySockets ?? '?'}, upstream ${r.upstreamOpen}`)
  if (r.failures.length > 0) lines.push('h2 FAILED because:', ...r.failures.map((f) => `  ${f}`))
  lines.push(`h2: ${r.ok ? 'OK' : 'FAIL'}`)
  return lines
}
