// Keep-alive HTTP/1.1 connections to one upstream instance, on node:net and Node's llhttp.
//
// undici's Pool did this job; on the small-GET bench it cost about as much CPU as everything else
// in the proxy together (its request object, header validation, a kInterceptors chain, a wasm
// parser fed through JS callbacks per header). A proxy's upstream side needs less: one request at
// a time per connection, the head written as one string, the answer's head read from the read
// buffer when it is of the plain kind (parsePlainHead) and by the C++ parser node:http uses
// otherwise, its body handed on as it comes (straight from the connection's read buffer when it
// has a Content-Length, see rawBodyLength). What it keeps of undici's pool: a limit
// of connections per instance with a FIFO queue behind it (a wait counts against the head
// deadline), idle connections closed after a keep-alive timeout (shortened to what the upstream's
// `Keep-Alive: timeout=` allows), connect, head and body timeouts, backpressure both ways, and no
// reuse of a connection that is not clean.

import { Buffer } from 'node:buffer'
import { performance } from 'node:perf_hooks'
import net from 'node:net'
import tls from 'node:tls'
import { Readable } from 'node:stream'
import { UpstreamError, classifyTransportError } from '../../errors.js'
import type { FailureKind } from '../../errors.js'
import { MAX_HEADER_BYTES, ResponseHead, keepAliveTimeoutS, parsePlainHead, rawHeader } from './headers.js'
import { framingProblem } from './framing.js'
import { H1Parser, RAW_BODY, SKIP_BODY, startReading, stopReading } from './parser.js'
import type { ParseError, ParserEvents } from './parser.js'
import { joinHostPort } from '../../host-port.js'
import { IDEMPOTENT } from '../../methods.js'

/** A request body held whole (so it can be sent again): the pieces as read, never joined. */
export type HeldBody = readonly Buffer[]

export interface UpstreamRequest {
  readonly method: string
  readonly path: string
  /** [name, value, ...]; no hop-by-hop or framing headers (the pool writes its own framing). */
  readonly headers: readonly string[]
  readonly body: HeldBody | Readable | null
  /** The client's Content-Length as llhttp framed it; -1: none (a streamed body goes chunked). */
  readonly contentLength: number
  /** From the request being sent to the answer's head. */
  readonly headersTimeoutMs: number
  /**
   * `performance.now()` when the attempt began (the request path read it already): the head
   * deadline runs from here. Absent: read at dispatch.
   */
  readonly startedAt?: number
  /** Longest silence between two pieces of the answer's body (0: none). */
  readonly bodyTimeoutMs: number
}

/** What an attempt hands the answer to. Exactly one of onEnd / onError ends it. */
export interface ResponseSink {
  /** Called at once: how to abort (the client went away) and how to resume after backpressure. */
  onStart(control: AttemptControl): void
  /**
   * The answer's head; false drops the answer (the attempt ends in onError with `err`). `at`:
   * `performance.now()` of the read that brought it, when the pool read the clock already.
   */
  onHead(head: ResponseHead, at?: number): boolean
  /**
   * False: stop reading the upstream until `control.resume()`. The chunk may be a view of the
   * connection's read buffer, valid only during the call unless `holdsChunks` says otherwise.
   */
  onBody(chunk: Buffer): boolean
  /** Read after each `onBody`: something the sink handed a chunk to (a write) still holds it. */
  readonly holdsChunks: boolean
  onEnd(): void
  onError(err: Error): void
}

export interface AttemptControl {
  abort(err: Error): void
  resume(): void
}

export interface PoolOptions {
  readonly host: string
  readonly port: number
  readonly connections: number
  readonly keepAliveTimeoutMs: number
  readonly connectTimeoutMs: number
  /** The service's timer for deadlines and idle connections. */
  readonly clock: UpstreamClock
  /** The instance speaks TLS: verified with this context (null: the system's CAs), never unverified. */
  readonly tls: { readonly context: tls.SecureContext | null; readonly servername: string | undefined } | null
}

interface Waiting {
  readonly req: UpstreamRequest
  readonly sink: ResponseSink
  /** The head deadline runs from the moment the request was dispatched, waiting included. */
  readonly headDeadline: number
}

/**
 * The HTTP/1.1 pool is a Transport itself (transport.ts checks that it fits), so the request path
 * reaches it with no wrapper; h1/ does not import the seam above it.
 */
export class UpstreamPool {
  readonly protocol = 'http/1.1'
  readonly options: PoolOptions
  readonly #idle: Connection[] = []
  readonly #waiting: Waiting[] = []
  #open = 0
  #closing = false
  #closed: (() => void) | null = null

  /** `host:port` as a Host header names this instance. */
  readonly authority: string

  constructor(options: PoolOptions) {
    this.options = options
    this.authority = joinHostPort(options.host, options.port)
  }

  get closed(): boolean {
    return this.#closing
  }

  /** Sends `req` on an idle connection, a new one, or after one frees up. */
  dispatch(req: UpstreamRequest, sink: ResponseSink): void {
    let conn = this.#idle.pop()
    while (conn !== undefined && conn.socket.destroyed) conn = this.#idle.pop()
    const headDeadline = (req.startedAt ?? performance.now()) + req.headersTimeoutMs
    if (conn !== undefined) {
      conn.send(req, sink, true, headDeadline)
      return
    }
    if (this.#open < this.options.connections) {
      this.#open++
      new Connection(this).send(req, sink, false, headDeadline)
      return
    }
    // Every connection busy: wait in order, but no longer than the head deadline (as HAProxy's
    // `timeout queue`): a request stuck behind slow answers fails as a timeout and may be retried
    // on another instance, instead of waiting for as long as those answers take.
    const waiting: Waiting = { req, sink, headDeadline }
    this.#waiting.push(waiting)
    this.options.clock.watchQueue(this)
    sink.onStart({
      abort: (err) => {
        const at = this.#waiting.indexOf(waiting)
        if (at < 0) return
        this.#waiting.splice(at, 1)
        sink.onError(err)
      },
      resume: () => {},
    })
  }

  /** Sends `req` on a new connection, whatever the limit (a stale one is going away meanwhile). */
  dispatchFresh(req: UpstreamRequest, sink: ResponseSink, headDeadline: number): void {
    this.#open++
    new Connection(this).send(req, sink, false, headDeadline)
  }

  /** Fails waiting requests past their head deadline; true while any are left waiting. */
  expireWaiting(now: number): boolean {
    for (let i = 0; i < this.#waiting.length; ) {
      const w = this.#waiting[i]!
      if (now < w.headDeadline) {
        i++
        continue
      }
      this.#waiting.splice(i, 1)
      w.sink.onError(new UpstreamError('timeout', `no free connection to the instance within ${w.req.headersTimeoutMs} ms (all ${this.options.connections} busy)`, false))
    }
    return this.#waiting.length > 0
  }

  /** A connection finished a request cleanly and may serve another. */
  release(conn: Connection): void {
    const next = this.#waiting.shift()
    if (next !== undefined) {
      conn.send(next.req, next.sink, true, next.headDeadline)
      return
    }
    if (this.#closing) {
      conn.socket.destroy()
      return
    }
    // Only ever called at the end of a read (Connection's #settle), which read the clock.
    conn.idleSince = this.options.clock.now
    this.#idle.push(conn)
    this.options.clock.watchIdle(this)
  }

  /** A connection is gone (closed by either side). */
  gone(conn: Connection): void {
    this.#open--
    const at = this.#idle.indexOf(conn)
    if (at >= 0) this.#idle.splice(at, 1)
    const next = this.#waiting.shift()
    if (next !== undefined) {
      this.#open++
      new Connection(this).send(next.req, next.sink, false, next.headDeadline)
      return
    }
    if (this.#open === 0) this.#closed?.()
  }

  /** Closes idle connections past their keep-alive timeout; true while any are left idle. */
  sweep(now: number): boolean {
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      const c = this.#idle[i]!
      if (now - c.idleSince >= c.keepAliveMs) c.socket.destroy()
    }
    return this.#idle.length > 0
  }

  /** Lets requests in flight and queued finish, then closes every connection. */
  close(): Promise<void> {
    this.#closing = true
    for (const c of [...this.#idle]) c.socket.destroy()
    if (this.#open === 0) return Promise.resolve()
    return new Promise((resolve) => (this.#closed = resolve))
  }
}

/**
 * One timer for every deadline of a service's pools, ticking while there is anything to watch:
 * open connections (head and body timeouts of the request each has out, if any), pools with idle
 * connections (keep-alive timeout) and pools with requests queued. A setTimeout per request cost
 * more than the rest of the upstream side; a timeout now fires up to TICK_MS late.
 */
const TICK_MS = 50

export class UpstreamClock {
  /**
   * `performance.now()` as read at the start of the connection event being handled (`stamp`):
   * one clock read per read event, shared by everything that event times (the body's last
   * data, the answer's latency, a connection's idle start) instead of one read for each.
   */
  now = 0
  /** Every open connection, from its creation to its close (not per request: no Set churn). */
  readonly #connections = new Set<Connection>()
  readonly #pools = new Set<UpstreamPool>()
  readonly #queues = new Set<UpstreamPool>()
  #timer: NodeJS.Timeout | null = null

  /** A connection opened: the deadlines of its requests are checked until `remove`. */
  add(conn: Connection): void {
    this.#connections.add(conn)
    this.#arm()
  }

  remove(conn: Connection): void {
    this.#connections.delete(conn)
  }

  /** A pool has idle connections to close in time. */
  watchIdle(pool: UpstreamPool): void {
    this.#pools.add(pool)
    this.#arm()
  }

  /** A pool has requests waiting for a connection, each until its head deadline. */
  watchQueue(pool: UpstreamPool): void {
    this.#queues.add(pool)
    this.#arm()
  }

  /** Reads the clock for the event about to be handled; `now` holds it until the next stamp. */
  stamp(): number {
    return (this.now = performance.now())
  }

  /** One timer for everything watched, started by whichever comes first and stopped when nothing is left. */
  #arm(): void {
    this.#timer ??= setInterval(this.#tick, TICK_MS).unref()
  }

  readonly #tick = (): void => {
    const now = this.stamp()
    for (const c of this.#connections) c.checkDeadlines(now)
    for (const p of this.#pools) if (!p.sweep(now)) this.#pools.delete(p)
    for (const p of this.#queues) if (!p.expireWaiting(now)) this.#queues.delete(p)
    if (this.#connections.size === 0 && this.#pools.size === 0 && this.#queues.size === 0) this.stop()
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }
}

/** How an instance that speaks TLS is verified (the service's upstreamTls); null: plain TCP. */
export type InstanceTls = PoolOptions['tls']

/**
 * A new connection to an instance, plain or TLS as the instance said it speaks (scheme https,
 * Curator sslPort): the one place both pooled connections and upgrade tunnels connect, so a tunnel
 * is verified exactly like a request. TLS is verified against the service's CA (or the system's),
 * never unverified; SNI only for a name, not an IP. Requests may be written at `readyEvent(secure)`.
 */
export function connectInstance(host: string, port: number, secure: InstanceTls, onread?: net.OnReadOpts): net.Socket {
  if (secure === null) return net.connect({ host, port, noDelay: true, ...(onread === undefined ? {} : { onread }) })
  const servername = secure.servername ?? (net.isIP(host) === 0 ? host : undefined)
  // (`onread` works on TLS sockets too; @types/node only lists it for net.)
  const options = {
    host,
    port,
    ALPNProtocols: ['http/1.1'],
    ...(onread === undefined ? {} : { onread }),
    ...(secure.context === null ? {} : { secureContext: secure.context }),
    ...(servername === undefined ? {} : { servername }),
  }
  const s = tls.connect(options as tls.ConnectionOptions)
  s.setNoDelay(true)
  return s
}

/** When a connection from `connectInstance` may carry a request: TCP connected, or TLS verified. */
export function readyEvent(secure: InstanceTls): 'connect' | 'secureConnect' {
  return secure === null ? 'connect' : 'secureConnect'
}

/**
 * A request's line and header lines, without the blank line that ends the head: the headers as
 * given (the forwarding policy made them, see forward.ts), and a Host naming the instance when
 * the client sent none (HTTP/1.0; nginx's default), for requests and upgrades alike.
 */
export function requestHead(method: string, path: string, headers: readonly string[], authority: string): string {
  let head = `${method} ${path} HTTP/1.1\r\n`
  let host = false
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i]!
    if (n.length === 4) host ||= n.toLowerCase() === 'host'
    head += `${n}: ${headers[i + 1]!}\r\n`
  }
  if (!host) head += `host: ${authority}\r\n`
  return head
}

/** The blank line that ends a head. */
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1')

/**
 * Each connection reads into a buffer of its own: this long at first (an idle pooled connection
 * holds it, so thousands of them cost tens of MB, not hundreds)...
 */
const READ_BUFFER_BYTES = 16 * 1024
/** ...and this long once a read filled it: a large body is coming, read it in fewer pieces. */
const READ_BUFFER_MAX_BYTES = 64 * 1024

class Connection implements ParserEvents, AttemptControl {
  readonly socket: net.Socket
  /** When requests may be written: TCP connected, or (TLS) the handshake verified. */
  readonly #readyEvent: 'connect' | 'secureConnect'
  readonly #pool: UpstreamPool
  readonly #clock: UpstreamClock
  readonly #parser: H1Parser
  #connected = false
  #req: UpstreamRequest | null = null
  #sink: ResponseSink | null = null
  #reused = false
  /** The head of the answer arrived (and went on): from here nothing can be sent again. */
  #headSeen = false
  /** A byte of an answer to the request out arrived (a malformed one counts): no replay then. */
  #answerBytes = false
  /** An answer with 1xx status is parsed as a message of its own; its end is not the end. */
  #informational = false
  /** A 1xx came before this answer: the connection is not reused (see onHead). */
  #afterInterim = false
  #reusable = false
  #bodySent = false
  /** Detaches a streamed request body from this connection (it ended early or failed). */
  #unpipe: (() => void) | null = null
  #headDeadline = 0
  #lastData = 0
  /** Where reads land (`onread`); replaced when a write still holds a view of it. */
  #readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES)
  /** Body bytes still to come of an answer passed through raw; 0: the parser reads. */
  #rawLeft = 0
  /** llhttp holds no part of a message: the next bytes start an answer (see `#read`). */
  #atMessageStart = true
  /**
   * The answer's last byte was read during the parse in progress: whether the connection goes
   * back to the pool is decided once the parse returned (`#settle`), never from inside it.
   */
  #answered = false
  /** Bytes came that no request asked for (after an answer's end): never reused. */
  #extra = false
  idleSince = 0
  keepAliveMs: number

  constructor(pool: UpstreamPool) {
    this.#pool = pool
    this.#clock = pool.options.clock
    this.keepAliveMs = pool.options.keepAliveTimeoutMs
    const { host, port, connectTimeoutMs, tls: secure } = pool.options
    this.#parser = new H1Parser('response', this, MAX_HEADER_BYTES)
    // Reads land in this connection's own buffer and go to `#onRead` (no Buffer per read).
    const s = connectInstance(host, port, secure, { buffer: this.#nextBuffer, callback: this.#onRead })
    this.socket = s
    this.#readyEvent = readyEvent(secure)
    s.setTimeout(connectTimeoutMs, this.#onConnectTimeout)
    s.once(this.#readyEvent, this.#onConnect)
    s.on('end', this.#onEnd)
    s.on('error', this.#onError)
    s.once('close', this.#onClose)
    this.#clock.add(this)
  }

  readonly #onConnect = (): void => {
    this.#connected = true
    this.socket.setTimeout(0)
    this.socket.resume() // flowing, so 'end' is emitted
  }

  readonly #nextBuffer = (): Buffer => this.#readBuffer

  /** One read: `n` bytes at the start of the read buffer. False stops reading (backpressure). */
  readonly #onRead = (n: number, buf: Uint8Array): boolean => {
    this.#clock.stamp()
    const more = this.#read(n, buf)
    if (n === buf.length && n < READ_BUFFER_MAX_BYTES && this.#readBuffer === buf) this.#readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_MAX_BYTES)
    return more
  }

  #read(n: number, buf: Uint8Array): boolean {
    // Bytes on a connection with no request out (idle in the pool, or its answer already ended):
    // nobody asked for them, and the next request must not get them as its answer. Closed, as
    // nginx closes an idle upstream keep-alive connection that turns readable.
    if (this.#req === null) {
      this.socket.destroy()
      return false
    }
    this.#answerBytes = true
    if (this.#rawLeft > 0) return this.#rawBody(buf, 0, n)
    const data = Buffer.from(buf.buffer, buf.byteOffset, n)
    // An answer whose whole head came in this read, of the plain kind: parsed here, its body
    // passed through raw, and llhttp never sees it (see parsePlainHead).
    if (this.#atMessageStart && this.#sink !== null && !this.#parser.skipBody) {
      const end = data.indexOf(HEAD_END)
      const plain = end < 0 ? null : parsePlainHead(data, end + 4)
      if (plain !== null) {
        if (plain.keepAlive) this.#keepAliveHint(plain.keepAliveTimeoutS)
        if (!this.#gotHead(plain.head, plain.keepAlive)) return false
        this.#rawLeft = plain.contentLength
        return this.#rawBody(buf, end + 4, n)
      }
    }
    const ret = this.#parser.execute(data)
    if (typeof ret !== 'number') {
      this.#badResponse(ret)
      return false
    }
    // The parser stopped after a head whose body comes raw: the rest of this read is body. The
    // stop was an upgrade pause, after which llhttp reports no errors until re-initialized.
    if (this.#rawLeft > 0) {
      this.#parser.reinitialize()
      return this.#rawBody(buf, ret, n)
    }
    if (this.#answered) {
      this.#settle(ret !== n)
      return !this.socket.destroyed
    }
    // Stopped short without an error: llhttp paused (an upgrade we never asked for).
    if (ret !== n && this.#sink !== null) {
      this.#fail('reset', 'malformed response from upstream (parser stopped early)')
      return false
    }
    return true
  }

  /** Passes body bytes `from`..`to` of the read buffer on; the answer ends with its last byte. */
  #rawBody(buf: Uint8Array, from: number, to: number): boolean {
    const sink = this.#sink
    if (sink === null) return false
    const take = Math.min(to - from, this.#rawLeft)
    this.#rawLeft -= take
    // Bytes after the body that no request asked for: not a connection to use again.
    if (to - from > take) this.#reusable = false
    let more = true
    if (take > 0) {
      if (this.#req!.bodyTimeoutMs > 0) this.#lastData = this.#clock.now
      more = sink.onBody(Buffer.from(buf.buffer, buf.byteOffset + from, take))
      // A write still holds that view: the next read goes to a new buffer.
      if (sink.holdsChunks) this.#readBuffer = Buffer.allocUnsafeSlow(buf.length)
    }
    if (this.#rawLeft === 0) {
      this.#complete()
      this.#settle(false)
      return !this.socket.destroyed
    }
    return more
  }

  readonly #onConnectTimeout = (): void => {
    this.#fail('connect', `connect timeout after ${this.#pool.options.connectTimeoutMs} ms`)
  }

  send(req: UpstreamRequest, sink: ResponseSink, reused: boolean, headDeadline: number): void {
    this.#req = req
    this.#sink = sink
    this.#reused = reused
    this.#answered = false
    this.#headSeen = false
    this.#answerBytes = false
    this.#afterInterim = false
    this.#bodySent = false
    this.#parser.skipBody = req.method === 'HEAD'
    this.#headDeadline = headDeadline
    sink.onStart(this)
    if (this.#sink === null) return // aborted at once
    let head = requestHead(req.method, req.path, req.headers, this.#pool.authority)
    // The framing is the proxy's own, written from what was parsed: canonical digits, never the
    // client's bytes (a `039`, a look-alike), so the instance reads exactly the body sent.
    const body = req.body
    const s = this.socket
    if (body === null) {
      s.write(req.contentLength >= 0 ? `${head}content-length: 0\r\n\r\n` : `${head}\r\n`, 'latin1')
      this.#bodySent = true
      return
    }
    if (!(body instanceof Readable)) {
      head += `content-length: ${heldLength(body)}\r\n`
      s.cork()
      s.write(`${head}\r\n`, 'latin1')
      for (const piece of body) s.write(piece)
      s.uncork()
      this.#bodySent = true
      return
    }
    // A streamed body: as it comes, chunked unless the client gave its length. Not a byte is
    // read from the client before the connection stands, so a refused connection leaves the
    // body untouched and the request can still go elsewhere.
    const length = req.contentLength >= 0
    s.write(`${head}${length ? `content-length: ${req.contentLength}\r\n` : 'transfer-encoding: chunked\r\n'}\r\n`, 'latin1')
    if (this.#connected) this.#pipe(body, !length)
    else
      s.once(this.#readyEvent, () => {
        if (this.#req === req) this.#pipe(body, !length)
      })
  }

  #pipe(body: Readable, chunked: boolean): void {
    const s = this.socket
    const onData = (c: Buffer): void => {
      if (chunked) s.write(`${c.length.toString(16)}\r\n`, 'latin1')
      s.write(c)
      if (chunked) s.write('\r\n', 'latin1')
      if (s.writableNeedDrain) body.pause()
    }
    const onDrain = (): void => {
      body.resume()
    }
    const onEnd = (): void => {
      cleanup()
      if (chunked) s.write('0\r\n\r\n', 'latin1')
      this.#bodySent = true
    }
    const onError = (err: Error): void => {
      cleanup()
      this.abort(err)
    }
    const cleanup = (): void => {
      this.#unpipe = null
      body.off('data', onData)
      body.off('end', onEnd)
      body.off('error', onError)
      s.off('drain', onDrain)
    }
    this.#unpipe = cleanup
    body.on('data', onData)
    body.once('end', onEnd)
    body.once('error', onError)
    s.on('drain', onDrain)
  }

  /** Called by the clock on every tick; only a request out has deadlines. */
  checkDeadlines(now: number): void {
    const req = this.#req
    if (req === null) return
    if (!this.#headSeen) {
      if (now >= this.#headDeadline) this.#fail('timeout', `no response head within ${req.headersTimeoutMs} ms`)
    } else if (req.bodyTimeoutMs > 0 && now - this.#lastData >= req.bodyTimeoutMs) {
      this.#fail('timeout', `response body stalled for ${req.bodyTimeoutMs} ms`)
    }
  }

  onBegin(): void {
    this.#atMessageStart = false
    // A message after the answer ended (in the same read): bytes nobody asked for.
    if (this.#req === null) this.#extra = true
  }

  onHead(major: number, _minor: number, headers: string[], _method: string, _url: string, status: number, text: string, upgrade: boolean, keepAlive: boolean): number {
    if (this.#sink === null) return 0
    // Not an HTTP/1.x answer we can pass on: a status out of 100-999 (nginx's range; `099` is
    // not a 1xx), a control byte in the reason, a protocol switch we never asked for (101, or
    // any upgrade: this connection only carries plain requests).
    if (major !== 1 || status < 100 || status > 999 || upgrade || status === 101 || !isReason(text)) {
      this.#fail('reset', `malformed response from upstream (status line: ${status})`)
      return 0
    }
    if (status < 200) {
      // An interim answer has no body (RFC 9110 §15.2), whatever it says: llhttp frames only
      // 100-103 so, and bytes after any other 1xx head would be passed on as a made-up 200's body.
      // The connection is not reused after it: an upstream that sends those is not one to trust
      // with the next request.
      this.#informational = true
      this.#afterInterim = true
      return SKIP_BODY
    }
    // The framing rules the portable parser keeps itself (a Transfer-Encoding list with an empty
    // element, a length past 2^53-1), applied to what llhttp took: one answer on both paths.
    const framing = framingProblem(headers)
    if (framing !== null) {
      this.#fail('reset', `malformed response from upstream (${framing})`)
      return 0
    }
    if (keepAlive) {
      const hint = rawHeader(headers, 'keep-alive')
      if (hint !== undefined) this.#keepAliveHint(keepAliveTimeoutS(hint))
    }
    if (!this.#gotHead(ResponseHead.fromRaw(status, text, headers), keepAlive)) return 0
    if (this.#parser.skipBody || status === 204 || status === 304) return 0
    const length = rawBodyLength(headers)
    if (length <= 0) return 0
    this.#rawLeft = length
    return RAW_BODY
  }

  /** A final answer's head, from either parser; false: the sink dropped it (the attempt failed). */
  #gotHead(head: ResponseHead, keepAlive: boolean): boolean {
    this.#reusable = keepAlive
    if (!this.#sink!.onHead(head, this.#clock.now)) {
      this.#fail('status', `upstream answered ${head.status}`)
      return false
    }
    this.#headSeen = true
    if (this.#req!.bodyTimeoutMs > 0) this.#lastData = this.#clock.now
    return true
  }

  /** `Keep-Alive: timeout=N`: close our side a second before the upstream would (undici's margin). */
  #keepAliveHint(seconds: number): void {
    if (seconds >= 0) this.keepAliveMs = Math.min(this.#pool.options.keepAliveTimeoutMs, seconds * 1000 - 1000)
  }

  onBody(chunk: Buffer): void {
    if (this.#req !== null && this.#req.bodyTimeoutMs > 0) this.#lastData = this.#clock.now
    if (this.#sink !== null && !this.#sink.onBody(chunk)) stopReading(this.socket)
  }

  onComplete(): void {
    this.#atMessageStart = true
    if (this.#informational) {
      this.#informational = false
      return
    }
    // The head of an answer passed through raw: its end is the body's last byte.
    if (this.#rawLeft > 0) return
    this.#complete()
  }

  /** The answer's last byte was read: the sink gets its end; the connection waits for `#settle`. */
  #complete(): void {
    const sink = this.#sink
    if (sink === null) return
    this.#req = null
    this.#sink = null
    this.#answered = true
    this.#unpipe?.()
    sink.onEnd()
  }

  /**
   * After the parse that ended an answer returned: back to the pool only if nothing but that
   * answer was read (`extra`: bytes followed it), the request went out whole, and both sides
   * keep the connection alive. Never from inside a parser callback: the next request would be
   * sent, and its answer taken from the bytes still being parsed (issue 17, cross-client poisoning).
   */
  #settle(extra: boolean): void {
    this.#answered = false
    // After a HEAD or a 1xx the connection is closed too: a backend that sends a body it should
    // not (a HEAD answered like a GET is a common bug) may send it late, in a later read, where it
    // would be taken as the next request's answer (the keep-alive race nginx has as well).
    const dirty = extra || this.#extra || this.#parser.skipBody || this.#afterInterim
    this.#extra = false
    if (!dirty && this.#reusable && this.#bodySent && this.keepAliveMs > 0 && !this.socket.destroyed) {
      // An idle pooled connection reads, so that its close, or bytes nobody asked for, are seen at
      // once. Reading may have been stopped for a slow client in the very read that ended the
      // answer (a chunked body's last piece filled the client's socket): left so, the next request
      // on it would get no answer until its head deadline (found by a hostile-input review).
      startReading(this.socket)
      this.#pool.release(this)
    } else this.socket.destroy()
  }

  resume(): void {
    startReading(this.socket)
  }

  abort(err: Error): void {
    const sink = this.#sink
    if (sink === null) return
    this.#sink = null
    this.#req = null
    this.#unpipe?.()
    this.socket.destroy()
    sink.onError(err)
  }

  readonly #onEnd = (): void => {
    // A body delimited by the close ends here; anything else was cut short.
    let why = 'upstream closed the connection'
    if (this.#rawLeft > 0) why = `upstream closed mid-response (${this.#rawLeft} bytes of the body missing)`
    else {
      const err = this.#parser.finish()
      if (err !== null) why = `upstream closed mid-response (${err.code})`
    }
    this.#answered = false
    if (this.#sink !== null) this.#fail('reset', why)
    this.socket.destroy()
  }

  readonly #onError = (err: Error): void => {
    const kind = this.#connected ? classifyTransportError(err) : 'connect'
    const code = (err as { code?: string }).code ?? err.name
    this.#fail(kind === 'timeout' ? 'timeout' : kind, `upstream ${kind === 'connect' ? 'connect' : 'connection'} error (${code})`, err)
  }

  readonly #onClose = (): void => {
    this.#clock.remove(this)
    this.#parser.close()
    this.#fail('reset', 'upstream closed the connection')
    this.#pool.gone(this)
  }

  #badResponse(err: ParseError): void {
    this.#fail('reset', `malformed response from upstream (${err.code})`)
  }

  /** Ends the attempt in flight, if any, with an error; the connection is not used again. */
  #fail(kind: FailureKind, message: string, cause?: unknown): void {
    const sink = this.#sink
    const req = this.#req
    this.#sink = null
    this.#req = null
    this.#unpipe?.()
    this.socket.destroy()
    if (sink === null || req === null) return
    // The upstream closed a kept-alive connection just as we sent on it: not a byte of the answer
    // came, so the request goes again once, on a fresh connection, if sending twice is harmless.
    // (An answer that came malformed is the instance's answer, not a stale connection.)
    if (kind === 'reset' && this.#reused && !this.#answerBytes && IDEMPOTENT.has(req.method) && !(req.body instanceof Readable)) {
      this.#pool.dispatchFresh(req, sink, performance.now() + req.headersTimeoutMs)
      return
    }
    sink.onError(new UpstreamError(kind, message, this.#headSeen, cause))
  }
}

/**
 * The Content-Length of an answer whose body can be passed through raw, or -1: none, several,
 * or a Transfer-Encoding as well (llhttp frames those, or refuses them).
 *
 * Why raw: llhttp copies every body piece into a new Buffer and calls into JS for each; at 1 MiB
 * answers those copies (and the garbage collections their memory sets off) cost more than the
 * rest of the proxy, and even on a 2-byte answer the raw path measured 7% less CPU. A raw body
 * goes from the connection's read buffer to the client socket, and the buffer is read into again.
 * Chunked and close-delimited bodies stay with llhttp.
 */
function rawBodyLength(headers: readonly string[]): number {
  let length = -1
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i]!
    if (n.length === 14 && n.toLowerCase() === 'content-length') {
      if (length >= 0) return -1
      length = Number(headers[i + 1])
      if (!Number.isSafeInteger(length) || length < 0) return -1
    } else if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') return -1
  }
  return length
}

/** A reason phrase: visible characters, SP and HTAB only (RFC 9112 §4), no control byte. */
function isReason(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff) return false
  }
  return true
}

function heldLength(body: HeldBody): number {
  let n = 0
  for (const piece of body) n += piece.length
  return n
}
