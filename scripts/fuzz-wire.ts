// The client side of `npm run fuzz` (scripts/fuzz/) on raw sockets: a seeded PRNG, a reader of
// HTTP/1.1 answers that trusts nothing it reads (the proxy is what is under test), and a
// connection whose every wait has an end.

import { Buffer } from 'node:buffer'
import net from 'node:net'
import type { Socket } from 'node:net'

/** mulberry32: tiny, fast, and the same sequence for the same seed everywhere (replays). */
export class Rng {
  #a: number

  constructor(seed: number) {
    this.#a = seed >>> 0
  }

  next(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0
    let t = this.#a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** An integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }

  chance(p: number): boolean {
    return this.next() < p
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!
  }

  /** One of `items`, each as likely as its weight. */
  weighted<T>(items: readonly (readonly [T, number])[]): T {
    let total = 0
    for (const [, w] of items) total += w
    let r = this.next() * total
    for (const [item, w] of items) {
      r -= w
      if (r < 0) return item
    }
    return items[items.length - 1]![0]
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n)
    for (let i = 0; i < n; i += 4) {
      const v = (this.next() * 4294967296) >>> 0
      b[i] = v & 0xff
      if (i + 1 < n) b[i + 1] = (v >>> 8) & 0xff
      if (i + 2 < n) b[i + 2] = (v >>> 16) & 0xff
      if (i + 3 < n) b[i + 3] = v >>> 24
    }
    return b
  }

  /** Printable ASCII (no CR/LF), for header values and the like. */
  text(n: number): string {
    let s = ''
    for (let i = 0; i < n; i++) s += String.fromCharCode(0x21 + Math.floor(this.next() * 94))
    return s
  }
}

/** A 32-bit hash of a few integers: one seed per (run, worker, case), so a case replays alone. */
export function mix(...parts: number[]): number {
  let h = 0x811c9dc5
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x01000193)
    h ^= h >>> 15
    h = Math.imul(h, 0x2c1b3c6d)
    h ^= h >>> 12
  }
  return h >>> 0
}

/** One answer as the client read it. `complete` false: the connection ended inside it. */
export interface Answer {
  readonly status: number
  readonly headers: ReadonlyMap<string, string>
  body: Buffer
  complete: boolean
}

const EMPTY = Buffer.alloc(0)
const CRLF = Buffer.from('\r\n', 'latin1')
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1')
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const MAX_HEAD = 64 * 1024

type State = 'head' | 'fixed' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'until-close' | 'tunnel' | 'broken'

/**
 * Reads answers in order. The framing of each depends on the request it answers (HEAD has no
 * body), so the owner says `expect(isHead)` once per request sent, in order. Anything not HTTP/1.1
 * as RFC 9112 writes it is `malformed` and ends the reading: the proxy must never send it.
 */
export class AnswerReader {
  readonly answers: Answer[] = []
  /** 1xx answers other than 101 (100 Continue, 103 Early Hints). */
  interim = 0
  /** After a 101: the tunnel's bytes. */
  readonly tunnel: Buffer[] = []
  tunnelBytes = 0
  malformed: string | null = null
  /**
   * Bytes read that belong to no answer: the rest of a read after a malformed answer began (and
   * everything after it), or the start of an answer the connection ended inside of its head.
   * Kept (the first 64 KiB) so a judge can tell stray bytes and see whose they are.
   */
  readonly stray: Buffer[] = []
  strayBytes = 0
  readonly #heads: boolean[] = []
  #buf: Buffer = EMPTY
  #state: State = 'head'
  #left = 0
  #parts: Buffer[] = []

  /** The next request sent was (true) or was not a HEAD. */
  expect(head: boolean): void {
    this.#heads.push(head)
  }

  /** True when the last answer began is still waiting for bytes. */
  get midAnswer(): boolean {
    const last = this.answers[this.answers.length - 1]
    return last !== undefined && !last.complete
  }

  feed(data: Buffer): void {
    if (this.#state === 'tunnel') {
      this.tunnel.push(data)
      this.tunnelBytes += data.length
      return
    }
    if (this.#state === 'broken') return this.#keepStray(data)
    this.#buf = this.#buf.length === 0 ? data : Buffer.concat([this.#buf, data])
    while (this.#step());
  }

  /**
   * The connection closed: a body delimited by the close ends here; an answer cut inside its body
   * keeps what came of it (a judge must see whose bytes those are), and bytes inside a head that
   * never ended are stray.
   */
  close(): void {
    if (this.#state === 'until-close') return this.#finish()
    if (this.#state === 'head' && this.#buf.length > 0) {
      this.#keepStray(this.#buf)
      this.#buf = EMPTY
    }
    this.#keepPartial()
  }

  #keepPartial(): void {
    const last = this.answers[this.answers.length - 1]
    if (last === undefined || last.complete || this.#parts.length === 0) return
    last.body = Buffer.concat(this.#parts)
  }

  #keepStray(data: Buffer): void {
    if (this.strayBytes < 64 * 1024) this.stray.push(data.subarray(0, 64 * 1024 - this.strayBytes))
    this.strayBytes += data.length
  }

  #broken(why: string): false {
    this.malformed = why
    this.#state = 'broken'
    this.#keepPartial()
    this.#keepStray(this.#buf)
    this.#buf = EMPTY
    return false
  }

  #take(n: number): Buffer {
    const piece = this.#buf.subarray(0, n)
    this.#buf = this.#buf.subarray(n)
    return piece
  }

  #finish(): void {
    const a = this.answers[this.answers.length - 1]!
    a.body = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts)
    a.complete = true
    this.#parts = []
    this.#state = 'head'
  }

  /** One step of the state machine; false when it needs more bytes (or gave up). */
  #step(): boolean {
    const buf = this.#buf
    switch (this.#state) {
      case 'head':
        return buf.length > 0 && this.#head()
      case 'fixed': {
        if (buf.length === 0) return false
        const piece = this.#take(Math.min(this.#left, buf.length))
        this.#parts.push(piece)
        this.#left -= piece.length
        if (this.#left === 0) this.#finish()
        return true
      }
      case 'until-close':
        if (buf.length === 0) return false
        this.#parts.push(this.#take(buf.length))
        return false
      case 'chunk-size': {
        const end = buf.indexOf(CRLF)
        if (end < 0) return buf.length > 1024 ? this.#broken('chunk size line over 1 KiB') : false
        const line = buf.toString('latin1', 0, end)
        const m = /^([0-9a-fA-F]{1,8})(;.*)?$/.exec(line)
        if (m === null) return this.#broken(`bad chunk size line ${JSON.stringify(line.slice(0, 40))}`)
        this.#take(end + 2)
        this.#left = parseInt(m[1]!, 16)
        this.#state = this.#left === 0 ? 'trailers' : 'chunk-data'
        return true
      }
      case 'chunk-data': {
        if (buf.length === 0) return false
        const piece = this.#take(Math.min(this.#left, buf.length))
        this.#parts.push(piece)
        this.#left -= piece.length
        if (this.#left === 0) this.#state = 'chunk-end'
        return true
      }
      case 'chunk-end':
        if (buf.length < 2) return false
        if (buf[0] !== 13 || buf[1] !== 10) return this.#broken('chunk not followed by CRLF')
        this.#take(2)
        this.#state = 'chunk-size'
        return true
      case 'trailers': {
        const end = buf.indexOf(CRLF)
        if (end < 0) return buf.length > 8192 ? this.#broken('trailer line over 8 KiB') : false
        this.#take(end + 2)
        if (end === 0) this.#finish()
        return true
      }
      default:
        return false
    }
  }

  #head(): boolean {
    const end = this.#buf.indexOf(HEAD_END)
    if (end < 0) return this.#buf.length > MAX_HEAD ? this.#broken('answer head over 64 KiB') : false
    const lines = this.#buf.toString('latin1', 0, end).split('\r\n')
    const m = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/.exec(lines[0]!)
    if (m === null) return this.#broken(`bad status line ${JSON.stringify(lines[0]!.slice(0, 60))}`)
    const status = Number(m[1])
    const headers = new Map<string, string>()
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!
      const colon = line.indexOf(':')
      const name = colon > 0 ? line.slice(0, colon) : ''
      if (!TOKEN.test(name) || /[\r\n\0]/.test(line)) return this.#broken(`bad header line ${JSON.stringify(line.slice(0, 60))}`)
      const key = name.toLowerCase()
      const value = line.slice(colon + 1).trim()
      const had = headers.get(key)
      headers.set(key, had === undefined ? value : `${had}, ${value}`)
    }
    // Taken only now, so a head refused above stays among the stray bytes a judge reads.
    this.#take(end + 4)
    if (status >= 100 && status < 200 && status !== 101) {
      this.interim++
      return true
    }
    const answer: Answer = { status, headers, body: EMPTY, complete: false }
    this.answers.push(answer)
    const isHead = this.#heads[this.answers.length - 1] ?? false
    if (status === 101) {
      answer.complete = true
      this.#state = 'tunnel'
      const rest = this.#take(this.#buf.length)
      if (rest.length > 0) {
        this.tunnel.push(rest)
        this.tunnelBytes += rest.length
      }
      return false
    }
    if (isHead || status === 204 || status === 304) {
      answer.complete = true
      return true
    }
    const te = headers.get('transfer-encoding')
    const cl = headers.get('content-length')
    if (te !== undefined) {
      if (cl !== undefined) return this.#broken('both Transfer-Encoding and Content-Length')
      if (!/(^|,)\s*chunked$/i.test(te)) return this.#broken(`Transfer-Encoding ${te} not ending in chunked`)
      this.#state = 'chunk-size'
      return true
    }
    if (cl !== undefined) {
      if (!/^\d{1,15}$/.test(cl)) return this.#broken(`bad Content-Length ${JSON.stringify(cl)}`)
      this.#left = Number(cl)
      if (this.#left === 0) {
        answer.complete = true
        return true
      }
      this.#state = 'fixed'
      return true
    }
    this.#state = 'until-close'
    return true
  }
}

interface Waiter {
  readonly ready: () => boolean
  readonly resolve: (ok: boolean) => void
  timer: NodeJS.Timeout | null
}

/**
 * One client connection: what it wrote (the first bytes, for a report), what it read, and waits
 * that end when their condition holds, the connection closes, or their own deadline passes. The
 * whole connection is destroyed after `boundMs` whatever happens, so nothing hangs.
 */
export class Wire {
  readonly socket: Socket
  readonly reader = new AnswerReader()
  /** The first bytes written and read, for the report of a failure. */
  readonly trace: Buffer[] = []
  #traced = 0
  readonly #readTrace: Buffer[] = []
  #readTraced = 0
  received = 0
  closed = false
  timedOut = false
  /** This side ended the connection (destroy): bytes cut inside a head are then ours to blame. */
  destroyedHere = false
  /** The socket's error code, if one came (ECONNREFUSED: the proxy is gone). */
  error: string | null = null
  readonly #waiters = new Set<Waiter>()
  readonly #bound: NodeJS.Timeout
  readonly #onClose: (w: Wire) => void

  constructor(port: number, boundMs: number, onClose: (w: Wire) => void) {
    this.#onClose = onClose
    this.socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
    this.socket.on('data', (d: Buffer) => {
      this.received += d.length
      if (this.#readTraced < 2048) {
        this.#readTrace.push(d.subarray(0, 2048 - this.#readTraced))
        this.#readTraced += Math.min(d.length, 2048 - this.#readTraced)
      }
      this.reader.feed(d)
      this.#check()
    })
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error ??= err.code ?? err.message
    })
    this.socket.once('close', () => {
      this.closed = true
      clearTimeout(this.#bound)
      this.reader.close()
      for (const w of this.#waiters) this.#settle(w, w.ready())
      this.#onClose(this)
    })
    this.#bound = setTimeout(() => {
      this.timedOut = true
      this.socket.destroy()
    }, boundMs)
  }

  write(data: Buffer | string): void {
    if (this.closed || this.socket.destroyed || this.socket.writableEnded) return
    const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data
    if (this.#traced < 1024) {
      this.trace.push(b.subarray(0, 1024 - this.#traced))
      this.#traced += Math.min(b.length, 1024 - this.#traced)
    }
    this.socket.write(b)
  }

  /** Half-close: no more bytes from us, answers still welcome. */
  end(): void {
    if (!this.closed) this.socket.end()
  }

  /** `reset`: an RST instead of a FIN (a client that crashed rather than left). */
  destroy(reset = false): void {
    if (this.closed) return
    this.destroyedHere = true
    if (reset) this.socket.resetAndDestroy()
    else this.socket.destroy()
  }

  /** Resolves true once `ready()` holds, false if the connection closes (or `ms` pass) first. */
  until(ready: () => boolean, ms = 0): Promise<boolean> {
    if (ready()) return Promise.resolve(true)
    if (this.closed) return Promise.resolve(false)
    return new Promise((resolve) => {
      const w: Waiter = { ready, resolve, timer: null }
      if (ms > 0) w.timer = setTimeout(() => this.#settle(w, ready()), ms)
      this.#waiters.add(w)
    })
  }

  /** Resolves when the connection is closed (by the proxy, or by the bound). */
  untilClosed(): Promise<boolean> {
    return this.until(() => false).then(() => !this.timedOut)
  }

  #settle(w: Waiter, ok: boolean): void {
    if (!this.#waiters.delete(w)) return
    if (w.timer !== null) clearTimeout(w.timer)
    w.resolve(ok)
  }

  #check(): void {
    for (const w of this.#waiters) if (w.ready()) this.#settle(w, true)
  }

  /** What was written, as a JSON string (for a report). */
  written(): string {
    return JSON.stringify(Buffer.concat(this.trace).toString('latin1'))
  }

  /** The first bytes read, as a JSON string (for a report). */
  read(): string {
    return JSON.stringify(Buffer.concat(this.#readTrace).toString('latin1'))
  }
}
