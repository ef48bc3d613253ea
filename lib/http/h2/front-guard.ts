// The defences of the HTTP/2 front (issue 26 §4), as one unit the front calls: the node:http2
// server options it listens with, a guard per client connection that counts the floods nghttp2
// does not bound by itself and ends such a connection with GOAWAY(ENHANCE_YOUR_CALM), and a
// per-stream timeout. What nghttp2 (inside node:http2) already bounds is set here and left to it;
// docs/http2.md "Hardening" lists each limit, its default and the CVE it answers.

import http2 from 'node:http2'
import { performance } from 'node:perf_hooks'
import { DEFAULT_LIMITS } from '../../limits.js'
import { MAX_HEADER_BYTES } from '../h1/headers.js'

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR } = http2.constants

/** The part of the client limits the HTTP/2 listener needs (limits.maxConcurrentStreams is the h2 front's config key). */
export interface H2FrontLimits {
  /** Streams open at once per client connection (default 100). */
  readonly maxConcurrentStreams?: number
  /** Most header fields in a request (default limits.maxHeaders, 100). */
  readonly maxHeaders?: number
}

export const DEFAULT_MAX_CONCURRENT_STREAMS = 100

/** `value` when it is an integer within [min, max], else `fallback`: every number here may come from a config file. */
function bounded(value: unknown, fallback: number, min: number, max: number): number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max ? value : fallback
}

/** node:http2's server options, with one it reads that @types/node does not list (lib/internal/http2/util.js updateOptionsBuffer). */
export type H2ServerOptions = http2.SecureServerOptions & http2.ServerOptions & { readonly maxOutstandingSettings?: number }

/**
 * The node:http2 server options of the client listener (h2 over TLS and h2c alike). Each value is
 * bounded here whatever the config says; what nginx, Envoy and HAProxy use is beside each.
 */
export function h2ServerSettings(limits: H2FrontLimits = {}): H2ServerOptions {
  // RFC 9113 recommends at least 100. nginx http2_max_concurrent_streams 128, HAProxy
  // tune.h2.fe.max-concurrent-streams 100, Envoy's edge recommendation 100. 10,000 at most, the
  // config's own bound: each stream may hold a header list and a window of buffered body.
  const maxConcurrentStreams = bounded(limits.maxConcurrentStreams, DEFAULT_MAX_CONCURRENT_STREAMS, 1, 10_000)
  const maxHeaders = bounded(limits.maxHeaders, DEFAULT_LIMITS.maxHeaders, 1, 10_000)
  return {
    settings: {
      maxConcurrentStreams,
      // The HTTP/1.1 head limit (16 KiB), counted the RFC 9113 §6.5.2 way (name + value + 32 per
      // field). node:http2 resets a stream whose list grows past it (ENHANCE_YOUR_CALM), so an
      // HPACK bomb or a CONTINUATION chain cannot grow one past it either (CVE-2024-27316).
      // nginx large_client_header_buffers 4 x 8k, HAProxy tune.bufsize 16k, Envoy 60 KiB.
      maxHeaderListSize: MAX_HEADER_BYTES,
      // No server push: nothing to promise, and one less state machine to attack.
      enablePush: false,
    },
    // A header block of more fields than the proxy's header count plus the five request
    // pseudo-headers (:method :scheme :authority :path :protocol) is refused by node:http2 before
    // the front sees it (HAProxy tune.http.maxhdr 101). Node counts each pair, so 4 at least.
    maxHeaderListPairs: Math.max(4, maxHeaders + 5),
    // Frames node:http2 calls invalid (among them DATA of length 0 without END_STREAM, the
    // CVE-2019-9518 empty-frame flood, and frames nghttp2 refuses) per session before it ends the
    // session (GOAWAY INTERNAL_ERROR, ERR_HTTP2_TOO_MANY_INVALID_FRAMES). Node's default 1000;
    // 100 is as many as a correct client ever needs (it needs none). nginx's flood detector and
    // HAProxy's glitch counter (tune.h2.fe.glitches-threshold) answer the same attack.
    maxSessionInvalidFrames: 100,
    // Streams refused for going past maxConcurrentStreams (REFUSED_STREAM) before node:http2 ends
    // the session: a client that ignores our SETTINGS is not honest. Node's default, 100.
    maxSessionRejectedStreams: 100,
    // PINGs we send and wait on (none today; the h2 front may probe liveness): Node's default is 10.
    maxOutstandingPings: 2,
    // SETTINGS we send and wait on to be acknowledged: one at the start, one more when a setting
    // changes. Node's default 10.
    maxOutstandingSettings: 2,
    // Entries in one SETTINGS frame from the client (nghttp2 answers more with ENHANCE_YOUR_CALM):
    // RFC 9113 defines 6, RFC 8441 and 9218 one each, and browsers add a GREASE entry. Node's default 32.
    maxSettings: 32,
    // Megabytes nghttp2 may hold for one session (HPACK tables, header lists, queued frames);
    // past it node:http2 refuses new streams with ENHANCE_YOUR_CALM. Node's default, 10 MB: with
    // 100 streams of 16 KiB header lists it leaves room for their queued answers.
    maxSessionMemory: 10,
    // The client's stream limit assumed before its SETTINGS arrive; it only matters to push,
    // which is off. Node's default (100), written so a version's change cannot surprise us.
    peerMaxConcurrentStreams: 100,
  }
}

/** A flood the guard counts, per connection and per second. */
export type GuardReason = 'resets' | 'settings' | 'pings' | 'priorities'

export interface GuardOptions {
  /** Streams the client resets before their answer ended, per second (default 100; CVE-2023-44487). */
  readonly maxResetsPerSecond?: number
  /** SETTINGS frames from the client per second (default 10; CVE-2019-9515). */
  readonly maxSettingsPerSecond?: number
  /** PINGs from the client per second (default 10; CVE-2019-9512). */
  readonly maxPingsPerSecond?: number
  /** PRIORITY frames from the client per second (default 100; CVE-2019-9513). */
  readonly maxPrioritiesPerSecond?: number
  /**
   * The largest request header list, bytes counted as RFC 9113 §6.5.2 does (default the HTTP/1.1
   * head limit, MAX_HEADER_BYTES): node:http2 holds to SETTINGS_MAX_HEADER_LIST_SIZE only once the
   * client acknowledged our SETTINGS, so the guard holds to it from the first stream.
   */
  readonly maxHeaderListBytes?: number
  /** Whether the guard refuses such lists itself (default true); false where the front answers them 431 on the same limit. */
  readonly refuseLargeHeaderLists?: boolean
  /** Time between our GOAWAY(ENHANCE_YOUR_CALM) and the close, for the streams below it to end, ms (default 1000). */
  readonly graceMs?: number
  /**
   * A connection with no stream open this long is closed, ms (default 5000, as HTTP/1.1 keep-alive).
   * It also ends a session nghttp2 has given up on (it sent its GOAWAY, and node:http2 leaves
   * the socket open: a refused SETTINGS frame does that).
   */
  readonly idleTimeoutMs?: number
  /** The clock, ms (default performance.now): tests pass their own. */
  readonly now?: () => number
  /** Told once, when a connection goes over a cap (for the log and a metric); what it throws is ignored. */
  readonly onTrip?: (reason: GuardReason, countThisSecond: number) => void
}

/** idleTimeoutMs is the HTTP/1.1 keep-alive timeout (h1/front.ts KEEP_ALIVE_TIMEOUT_MS, checked by a unit test): one limit per thing. */
export const DEFAULT_GUARD = { maxResetsPerSecond: 100, maxSettingsPerSecond: 10, maxPingsPerSecond: 10, maxPrioritiesPerSecond: 100, graceMs: 1000, idleTimeoutMs: 5000 } as const

/** A count in the current one-second window: two numbers, whatever the rate. */
class PerSecond {
  #start = -Infinity
  #count = 0
  constructor(readonly cap: number) {}

  /** Counts one; true when this second's count is past the cap. */
  hit(now: number): boolean {
    if (now - this.#start >= 1000 || now < this.#start) {
      this.#start = now
      this.#count = 0
    }
    if (this.#count < Number.MAX_SAFE_INTEGER) this.#count++
    return this.#count > this.cap
  }

  get count(): number {
    return this.#count
  }
}

/** What the front keeps of a guarded connection. */
export interface SessionGuard {
  /** The reason the connection was sent GOAWAY(ENHANCE_YOUR_CALM), or null. */
  readonly tripped: GuardReason | null
  /**
   * Resets a stream on the proxy's own account (a timeout, an instance that failed mid-answer):
   * such a reset is not the client's and does not count toward maxResetsPerSecond.
   */
  reset(stream: http2.Http2Stream, code?: number): void
}

/**
 * Watches one client connection and ends it with GOAWAY(ENHANCE_YOUR_CALM) when the client goes
 * past a cap. Floods node:http2 shows no event for are bounded by the options above: empty DATA
 * (maxSessionInvalidFrames), CONTINUATION (nghttp2 1.61 takes at most 8 per header block, and
 * maxHeaderListSize), WINDOW_UPDATE (a zero increment is a PROTOCOL_ERROR and a window past
 * 2^31-1 a FLOW_CONTROL_ERROR, both ending the session in nghttp2; a valid one costs a parse and
 * queues nothing), and SETTINGS/PING acknowledgements nobody reads (nghttp2's max_outbound_ack,
 * 1000, ends the session as "flooding"). test/integration/h2-front-guard.test.ts shows each.
 */
export function guardSession(session: http2.ServerHttp2Session, opts: GuardOptions = {}): SessionGuard {
  return new Guard(session, opts)
}

class Guard implements SessionGuard {
  tripped: GuardReason | null = null
  readonly #session: http2.ServerHttp2Session
  readonly #now: () => number
  readonly #graceMs: number
  readonly #onTrip: GuardOptions['onTrip']
  readonly #caps: Record<GuardReason, PerSecond>
  /** 0: the front checks header lists itself. */
  readonly #maxHeaderListBytes: number
  /** Streams the proxy reset itself: weak, so a long connection holds none of them. */
  readonly #ours = new WeakSet<http2.Http2Stream>()
  #graceTimer: NodeJS.Timeout | null = null
  #idleTimer: NodeJS.Timeout | null = null
  readonly #idleTimeoutMs: number
  #goawaySent = false
  /** Streams open now: once the GOAWAY is out and none is left, there is nothing to wait for. */
  #open = 0
  #ending = false

  constructor(session: http2.ServerHttp2Session, opts: GuardOptions) {
    this.#session = session
    this.#now = opts.now ?? (() => performance.now())
    this.#graceMs = bounded(opts.graceMs, DEFAULT_GUARD.graceMs, 0, 60_000)
    this.#onTrip = opts.onTrip
    this.#idleTimeoutMs = bounded(opts.idleTimeoutMs, DEFAULT_GUARD.idleTimeoutMs, 1, 3600_000)
    const cap = (v: unknown, d: number) => new PerSecond(bounded(v, d, 1, 1_000_000))
    this.#caps = {
      resets: cap(opts.maxResetsPerSecond, DEFAULT_GUARD.maxResetsPerSecond),
      settings: cap(opts.maxSettingsPerSecond, DEFAULT_GUARD.maxSettingsPerSecond),
      pings: cap(opts.maxPingsPerSecond, DEFAULT_GUARD.maxPingsPerSecond),
      priorities: cap(opts.maxPrioritiesPerSecond, DEFAULT_GUARD.maxPrioritiesPerSecond),
    }
    this.#maxHeaderListBytes = opts.refuseLargeHeaderLists === false ? 0 : bounded(opts.maxHeaderListBytes, MAX_HEADER_BYTES, 1024, 1024 * 1024)
    // Every handler only counts; ending the session is deferred out of node:http2's callback
    // (destroying inside one can abort the process, nodejs/node#64850).
    // First among the listeners, so a stream refused here reaches the front already closed (as a
    // stream the client reset in the same read does: the front copes with both the same way).
    session.prependListener('stream', (stream: http2.ServerHttp2Stream, _headers: unknown, _flags: number, rawHeaders: string[]) => this.#watch(stream, rawHeaders))
    session.on('remoteSettings', () => this.#hit('settings'))
    session.on('ping', () => this.#hit('pings'))
    // A PRIORITY frame reaches JavaScript only while someone listens (node:http2 keeps a listener
    // count): on the stream when it is open, else on the session.
    session.on('priority', () => this.#hit('priorities'))
    // node:http2 ends the session itself after these (an error from nghttp2, a frame it could not
    // send); the listeners are here so that no emitter is ever without one.
    session.on('error', () => {})
    session.on('frameError', () => {})
    session.on('close', () => {
      if (this.#graceTimer) clearTimeout(this.#graceTimer)
      this.#graceTimer = null
      this.#stopIdle()
    })
    this.#startIdle()
  }

  #startIdle(): void {
    this.#stopIdle()
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null
      // A timer, not a node:http2 event: closing here is safe. Idle means no stream, so nothing is cut.
      try {
        if (!this.#session.destroyed && this.#open === 0) this.#session.destroy()
      } catch {
        // Out of a timer, a throw would end the process.
      }
    }, this.#idleTimeoutMs)
    this.#idleTimer.unref()
  }

  #stopIdle(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer)
    this.#idleTimer = null
  }

  reset(stream: http2.Http2Stream, code: number = NGHTTP2_CANCEL): void {
    this.#ours.add(stream)
    if (!stream.closed && !stream.destroyed) stream.close(bounded(code, NGHTTP2_CANCEL, 0, 0xffffffff))
  }

  #watch(stream: http2.ServerHttp2Stream, rawHeaders: readonly string[]): void {
    if (this.#open++ === 0) this.#stopIdle()
    stream.once('close', () => {
      if (--this.#open > 0 || this.#session.destroyed) return
      if (this.#goawaySent && !this.#ending) this.#destroySoon()
      else this.#startIdle()
    })
    stream.on('error', () => {})
    stream.on('priority', () => this.#hit('priorities'))
    // 'stream' comes on the next tick after the HEADERS, so a RST_STREAM in the same read has
    // already aborted it: rapid reset is exactly that, so look before listening.
    if (stream.aborted) this.#aborted(stream)
    else stream.once('aborted', () => this.#aborted(stream))
    // Refused as node:http2 refuses it after the SETTINGS ACK: RST_STREAM(ENHANCE_YOUR_CALM).
    if (this.#maxHeaderListBytes > 0 && !stream.closed && headerListBytes(rawHeaders) > this.#maxHeaderListBytes) this.reset(stream, NGHTTP2_ENHANCE_YOUR_CALM)
  }

  /** A stream closed before our answer ended (Envoy's "premature reset", nghttp2's reset rate limit). */
  #aborted(stream: http2.Http2Stream): void {
    if (!this.#ours.has(stream)) this.#hit('resets')
  }

  #hit(reason: GuardReason): void {
    const counter = this.#caps[reason]
    if (!counter.hit(this.#now())) return
    if (this.tripped === null) {
      this.tripped = reason
      try {
        this.#onTrip?.(reason, counter.count)
      } catch {
        // A reporting hook must not decide the connection's fate.
      }
      setImmediate(() => this.#goaway())
    } else if (this.#goawaySent && !this.#ending) {
      // Still flooding after the GOAWAY went out: the grace is for honest streams, not for this.
      this.#destroySoon()
    }
  }

  #goaway(): void {
    const s = this.#session
    if (s.destroyed || this.#ending) return
    // Streams up to the last one nghttp2 took are answered during the grace (RFC 9113 §6.8);
    // nghttp2 refuses any newer one once the GOAWAY is out.
    const last = bounded(s.state.lastProcStreamID, 0, 0, 0x7fffffff)
    try {
      s.goaway(NGHTTP2_ENHANCE_YOUR_CALM, last)
    } catch {
      // The session went away meanwhile (goaway throws on a destroyed one): a throw here would be uncaught.
      return this.#destroy()
    }
    this.#goawaySent = true
    // With no stream left nghttp2 stops reading (it wants nothing more), so waiting helps no one.
    if (this.#open === 0) return this.#destroy()
    this.#graceTimer = setTimeout(() => this.#destroy(), this.#graceMs)
    this.#graceTimer.unref()
  }

  #destroySoon(): void {
    this.#ending = true
    setImmediate(() => this.#destroy())
  }

  #destroy(): void {
    this.#ending = true
    if (this.#graceTimer) clearTimeout(this.#graceTimer)
    this.#graceTimer = null
    // null, not undefined: destroy(error = NGHTTP2_NO_ERROR, code) would take an undefined error as
    // NO_ERROR and send that. With null the closing GOAWAY says ENHANCE_YOUR_CALM and no 'error' is emitted.
    try {
      if (!this.#session.destroyed) this.#session.destroy(null as unknown as Error, NGHTTP2_ENHANCE_YOUR_CALM)
    } catch {
      // Nothing left to close; out of a timer, a throw would end the process.
    }
  }
}

/** A header list's size as RFC 9113 §6.5.2 counts it: name + value + 32 per field, pseudo-headers included. */
export function headerListBytes(rawHeaders: readonly string[]): number {
  let n = 0
  for (let i = 0; i < rawHeaders.length; i++) n += rawHeaders[i].length + (i % 2 === 0 ? 32 : 0)
  return n
}

export interface BodyTimeoutOptions {
  /** Resets through the guard, so the proxy's own resets are not counted as the client's. */
  readonly guard?: SessionGuard
  /** Instead of the default action (408 before the answer's head, else RST_STREAM(CANCEL)). */
  readonly onTimeout?: (stream: http2.ServerHttp2Stream) => void
}

/**
 * Ends a stream that moves no byte either way for `ms` (nginx's client_body_timeout and
 * send_timeout, per stream): a client that stops sending its body, or stops reading the answer
 * (its window stays shut, so our writes stop completing: flow control keeps the memory at one
 * window per stream, and this frees even that). node:http2's stream timer is reset by each read
 * and each write, so it measures exactly that silence. Returns a function that disarms it.
 */
export function streamBodyTimeout(stream: http2.ServerHttp2Stream, ms: number, opts: BodyTimeoutOptions = {}): () => void {
  const timeoutMs = bounded(ms, DEFAULT_LIMITS.clientBodyTimeoutMs, 1, 24 * 3600_000)
  const reset = (code: number) => (opts.guard ? opts.guard.reset(stream, code) : stream.close(code))
  const fire = () => {
    if (stream.closed || stream.destroyed) return
    try {
      if (opts.onTimeout) return opts.onTimeout(stream)
      if (!stream.headersSent) {
        // The request did not finish in time: say so, then stop the rest of its body.
        stream.respond({ ':status': 408, 'content-length': '0' }, { endStream: true })
        reset(NGHTTP2_NO_ERROR)
      } else {
        reset(NGHTTP2_CANCEL)
      }
    } catch {
      if (!stream.destroyed) stream.destroy()
    }
  }
  // Out of the timer's event: the close may end the session's last stream.
  stream.setTimeout(timeoutMs, () => setImmediate(fire))
  return () => {
    if (!stream.destroyed) stream.setTimeout(0)
  }
}
