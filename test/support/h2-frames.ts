// A raw HTTP/2 client over net.Socket (RFC 9113 framing, RFC 7541 literals): it writes exactly the
// frames a test asks for, valid or not, and parses what comes back into frames, so a test can wait
// for a GOAWAY and read its error code. The h2 front's tests and the h2 fuzz family use it too.

import { Buffer } from 'node:buffer'
import net from 'node:net'

export const FRAME = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const
/** SETTINGS identifiers (RFC 9113 §6.5.2). */
export const SETTING = { HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5, MAX_HEADER_LIST_SIZE: 6 } as const
/** Error codes (RFC 9113 §7), by name, for messages. */
export const ERROR_NAMES = ['NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'STREAM_CLOSED', 'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM', 'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED'] as const

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

// The same numbers one by one, as the h2 front's tests (worktree h2front) import them.
export const { DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY } = FRAME
export const { END_STREAM, END_HEADERS } = FLAG

export interface Frame {
  readonly type: number
  readonly flags: number
  readonly streamId: number
  readonly payload: Buffer
}

/** One frame's bytes: the 9-byte head (RFC 9113 §4.1) and the payload, whatever its size. */
export function frame(type: number, flags: number, streamId: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(streamId & 0x7fffffff, 5)
  return Buffer.concat([head, payload])
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0, 0)
  return b
}

/** An HPACK integer with an n-bit prefix (RFC 7541 §5.1). */
export function hpackInt(value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1
  if (value < max) return [first | value]
  const out = [first | max]
  value -= max
  while (value >= 128) {
    out.push((value % 128) + 128)
    value = Math.floor(value / 128)
  }
  out.push(value)
  return out
}

/** A header block of literal fields without indexing (RFC 7541 §6.2.2), no Huffman: no state in either decoder. */
export function hpackBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const parts: Buffer[] = []
  for (const [name, value] of fields) {
    const n = Buffer.from(name, 'latin1')
    const v = Buffer.from(value, 'latin1')
    parts.push(Buffer.from([0x00, ...hpackInt(n.length, 7, 0)]), n, Buffer.from(hpackInt(v.length, 7, 0)), v)
  }
  return Buffer.concat(parts)
}

/** hpackBlock under the h2 front tests' name. */
export const block = hpackBlock

/** Gathers the frames a peer sends on `socket` (after our preface: the peer sends no preface of its own). */
export function frameReader(socket: net.Socket): { readonly frames: Frame[]; readonly ended: () => boolean } {
  const frames: Frame[] = []
  let buf = Buffer.alloc(0)
  let ended = false
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3)
      if (buf.length < 9 + len) break
      frames.push({ type: buf[3], flags: buf[4], streamId: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) })
      buf = buf.subarray(9 + len)
    }
  })
  socket.on('close', () => (ended = true))
  socket.on('error', () => (ended = true))
  return { frames, ended: () => ended }
}

/** The request pseudo-headers of a plain GET, then `extra`. */
export function getFields(path = '/', extra: readonly (readonly [string, string])[] = []): [string, string][] {
  return [[':method', 'GET'], [':scheme', 'http'], [':authority', 'localhost'], [':path', path], ...extra.map(([n, v]) => [n, v] as [string, string])]
}

export function settingsPayload(entries: readonly (readonly [number, number])[]): Buffer {
  const b = Buffer.alloc(6 * entries.length)
  entries.forEach(([id, value], i) => {
    b.writeUInt16BE(id, 6 * i)
    b.writeUInt32BE(value >>> 0, 6 * i + 2)
  })
  return b
}

/** The fields of a GOAWAY payload. */
export function goawayOf(f: Frame): { lastStreamId: number; code: number; name: string } {
  const code = f.payload.readUInt32BE(4)
  return { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code, name: ERROR_NAMES[code] ?? `0x${code.toString(16)}` }
}

/** Builders for each frame type, returning bytes (to write alone, or to concatenate into one flood). */
export const build = {
  settings: (entries: readonly (readonly [number, number])[] = []) => frame(FRAME.SETTINGS, 0, 0, settingsPayload(entries)),
  settingsAck: () => frame(FRAME.SETTINGS, FLAG.ACK, 0),
  headers: (streamId: number, fields: readonly (readonly [string, string])[], opts: { endStream?: boolean; endHeaders?: boolean } = {}) =>
    frame(FRAME.HEADERS, (opts.endStream ?? true ? FLAG.END_STREAM : 0) | (opts.endHeaders ?? true ? FLAG.END_HEADERS : 0), streamId, hpackBlock(fields)),
  /** A header block already encoded, cut as the test likes. */
  headersRaw: (streamId: number, flags: number, block: Uint8Array) => frame(FRAME.HEADERS, flags, streamId, block),
  continuation: (streamId: number, block: Uint8Array, endHeaders = false) => frame(FRAME.CONTINUATION, endHeaders ? FLAG.END_HEADERS : 0, streamId, block),
  data: (streamId: number, body: Uint8Array | string, endStream = false) => frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, streamId, typeof body === 'string' ? Buffer.from(body) : body),
  rst: (streamId: number, code = 8) => frame(FRAME.RST_STREAM, 0, streamId, u32(code)),
  ping: (opaque = Buffer.alloc(8), ack = false) => frame(FRAME.PING, ack ? FLAG.ACK : 0, 0, opaque),
  priority: (streamId: number, dependsOn = 0, weight = 15, exclusive = false) =>
    frame(FRAME.PRIORITY, 0, streamId, Buffer.concat([u32((exclusive ? 0x80000000 : 0) | dependsOn), Buffer.from([weight])])),
  windowUpdate: (streamId: number, increment: number) => frame(FRAME.WINDOW_UPDATE, 0, streamId, u32(increment)),
  goaway: (lastStreamId: number, code = 0) => frame(FRAME.GOAWAY, 0, 0, Buffer.concat([u32(lastStreamId), u32(code)])),
}

/**
 * One client connection speaking raw frames. It sends the preface and an empty SETTINGS on
 * connect (unless told not to), ACKs the server's SETTINGS, and keeps every frame it receives
 * (bounded: a test that floods reads counts, not copies, past `keep`).
 */
export class RawH2Client {
  readonly socket: net.Socket
  readonly frames: Frame[] = []
  /** How many frames of each type arrived (kept even when `frames` is full). */
  readonly counts = new Map<number, number>()
  /** DATA payload bytes received per stream. */
  readonly dataBytes = new Map<number, number>()
  closed = false
  #buf: Buffer = Buffer.alloc(0)
  #waiters = new Set<() => void>()
  readonly #keep: number
  readonly #autoAck: boolean

  private constructor(socket: net.Socket, keep: number, autoAck: boolean) {
    this.socket = socket
    this.#keep = keep
    this.#autoAck = autoAck
    socket.on('data', (d: Buffer) => this.#read(d))
    socket.on('error', () => {})
    socket.on('close', () => {
      this.closed = true
      this.#wake()
    })
  }

  static connect(port: number, opts: { preface?: boolean; settings?: readonly (readonly [number, number])[]; keep?: number; autoAck?: boolean; host?: string } = {}): Promise<RawH2Client> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, opts.host ?? '127.0.0.1')
      const c = new RawH2Client(socket, opts.keep ?? 10_000, opts.autoAck ?? true)
      socket.once('error', reject)
      socket.once('connect', () => {
        socket.off('error', reject)
        if (opts.preface ?? true) socket.write(Buffer.concat([PREFACE, build.settings(opts.settings ?? [])]))
        resolve(c)
      })
    })
  }

  write(...bytes: Uint8Array[]): void {
    if (!this.socket.destroyed) this.socket.write(bytes.length === 1 ? bytes[0] : Buffer.concat(bytes))
  }

  /** Resolves with the first frame (already received or to come) that `match` accepts; rejects once the connection closes without one. */
  async next(match: (f: Frame) => boolean, what: string, timeoutMs = 10_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const f = this.frames.find(match)
      if (f) return f
      if (this.closed) throw new Error(`connection closed before ${what}; got ${this.describe()}`)
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; got ${this.describe()}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, 50)
        function done() {
          clearTimeout(t)
          resolve()
        }
        this.#waiters.add(done)
      })
    }
  }

  goaway(timeoutMs?: number): Promise<{ lastStreamId: number; code: number; name: string }> {
    return this.next((f) => f.type === FRAME.GOAWAY, 'a GOAWAY', timeoutMs).then(goawayOf)
  }

  /** Resolves once the server has closed the connection. */
  async ended(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error(`connection still open after ${timeoutMs} ms; got ${this.describe()}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, 50)
        function done() {
          clearTimeout(t)
          resolve()
        }
        this.#waiters.add(done)
      })
    }
  }

  /** A PING the server must answer: once its ACK is back, the server has processed every byte written before it. */
  async roundTrip(): Promise<void> {
    const opaque = Buffer.from(Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0').slice(0, 8), 'latin1')
    this.write(build.ping(opaque))
    await this.next((f) => f.type === FRAME.PING && (f.flags & FLAG.ACK) !== 0 && f.payload.equals(opaque), 'the PING ACK')
  }

  describe(): string {
    const tail = this.frames.slice(-8).map((f) => (f.type === FRAME.GOAWAY ? `GOAWAY(${goawayOf(f).name})` : f.type === FRAME.RST_STREAM ? `RST_STREAM(${f.streamId}, ${ERROR_NAMES[f.payload.readUInt32BE(0)]})` : `type ${f.type} on ${f.streamId}`))
    return `${this.frames.length} frames [${tail.join(', ')}]${this.closed ? ', closed' : ''}`
  }

  close(): void {
    this.socket.destroy()
  }

  #read(d: Buffer): void {
    this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d])
    while (this.#buf.length >= 9) {
      const length = this.#buf.readUIntBE(0, 3)
      if (this.#buf.length < 9 + length) break
      const f: Frame = { type: this.#buf[3], flags: this.#buf[4], streamId: this.#buf.readUInt32BE(5) & 0x7fffffff, payload: this.#buf.subarray(9, 9 + length) }
      this.#buf = this.#buf.subarray(9 + length)
      this.counts.set(f.type, (this.counts.get(f.type) ?? 0) + 1)
      if (f.type === FRAME.DATA) this.dataBytes.set(f.streamId, (this.dataBytes.get(f.streamId) ?? 0) + f.payload.length)
      if (this.frames.length < this.#keep || f.type === FRAME.GOAWAY || f.type === FRAME.RST_STREAM) this.frames.push(f)
      if (this.#autoAck && f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0) this.write(build.settingsAck())
    }
    this.#wake()
  }

  #wake(): void {
    const ws = [...this.#waiters]
    this.#waiters.clear()
    for (const w of ws) w()
  }
}
