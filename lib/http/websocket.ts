// Upgrade tunnels (WebSocket, or any HTTP/1.1 Upgrade), held to the rules of every request: the
// instance is picked by the service's strategy and reached as a pooled request reaches it
// (connectInstance: its own scheme, TLS verified with upstreamTls); the head going upstream is
// written from the forwarding policy's headers (forward.ts: X-Forwarded-*, Via, the `_` rule);
// the answer's head is read by the same parser as pooled answers; the service's timeoutMs bounds
// the handshake (504), connectTimeoutMs the connect (502). On 101 both sides are piped; any other
// answer is relayed with the proxy's own framing, as an ordinary answer. The lease is held until
// the client's socket closes (least-loaded counts open tunnels), and whichever side closes first,
// in any phase, closes the other. An upgrade is not retried elsewhere: once the handshake went
// upstream, it is that instance's.
//
// http-proxy-3 did this before; its ws() writes the head from req.headers with X-Forwarded-* of its
// own (appended to a client's), connects with TLS options of its own, has no handshake deadline and
// left the instance's socket open when the client went first. Bending it to our policy took more
// code than this tunnel.

import { performance } from 'node:perf_hooks'
import type { Socket } from 'node:net'
import type { Buffer } from 'node:buffer'
import type { Lease, Outcome } from '../balancing/balancer.js'
import { UpstreamError, classifyTransportError } from '../errors.js'
import type { FailureKind } from '../errors.js'
import type { Logger } from '../log.js'
import type { Exchange } from './h1/exchange.js'
import { MAX_HEADER_BYTES, ResponseHead, rawHeader } from './h1/headers.js'
import { H1Parser, RAW_BODY } from './h1/parser.js'
import type { ParserEvents } from './h1/parser.js'
import { connectInstance, readyEvent } from './h1/upstream.js'
import { upgradeRequestHead } from './forward.js'
import { isGatewayStatus } from '../balancing/retry.js'
import { sendError } from './h1/send-error.js'
import type { Service } from './service.js'
import { joinHostPort } from '../host-port.js'

/**
 * What a client may send after its upgrade head before the instance answered, held for the
 * instance (WebSocket clients send nothing then). Beyond it the client is not read until the 101;
 * the handshake deadline still ends the wait.
 */
const EARLY_BYTES_MAX = 64 * 1024

export class UpgradeTunnel {
  readonly #log: Logger

  constructor(logger: Logger) {
    this.#log = logger.child({ component: 'upgrade' })
  }

  /** `socket` is paused and no longer the front's; `head` is what the client sent after its head. */
  handle(service: Service, ex: Exchange, socket: Socket, head: Buffer): void {
    const b = service.balancer
    const hashKey = b.usesHashKey ? b.hashKey({ headers: ex.headers, remoteAddress: ex.remoteAddress }) : undefined
    const lease = b.acquire(null, { hashKey })
    if (lease === null) {
      sendError(ex, 503, 'ZP_ERR_NO_ENDPOINT', `no instance of service "${service.name}" is available`, service.name, true)
      socket.end()
      return
    }
    if (service.instanceProtocol(lease.host) !== 'http/1.1') {
      // An upgrade over HTTP/2 is extended CONNECT (RFC 8441), not built yet; the instance did
      // nothing wrong, so the lease goes back without an outcome.
      lease.release({ ok: null })
      sendError(ex, 502, 'ZP_ERR_UPGRADE_UNSUPPORTED', `the instance speaks ${service.instanceProtocol(lease.host)}: upgrades (WebSocket) to HTTP/2 instances are not supported yet`, service.name, true)
      socket.end()
      return
    }
    new Tunnel(service, lease, ex, socket, head, this.#log)
  }
}

/** handshake: waiting for the instance's answer; relay: passing on a non-101 answer; open: piped. */
type Phase = 'handshake' | 'relay' | 'open' | 'done'

class Tunnel implements ParserEvents {
  readonly #service: Service
  readonly #lease: Lease
  readonly #ex: Exchange
  readonly #client: Socket
  readonly #upstream: Socket
  readonly #parser: H1Parser
  readonly #log: Logger
  readonly #startedAt = performance.now()
  readonly #timer: NodeJS.Timeout
  /** What the client sent after its head, sent on once the instance switched protocols. */
  readonly #early: Buffer[] = []
  #earlyBytes = 0
  #phase: Phase = 'handshake'
  #connected = false
  /** A 1xx other than 101 was parsed: its end is not the answer's end. */
  #interim = false
  /** The 101's head, kept from onHead until the parse that read it returns. */
  #switching: ResponseHead | null = null
  #upgradeToken: string | undefined
  /** How the instance did; the lease is released with it when the client's socket closes. */
  #outcome: Outcome | null = null
  /**
   * After the handshake, the service's bodyTimeoutMs bounds silence (a relayed answer that stops
   * coming) and a stalled side (an open tunnel whose reader does not drain): then both close.
   */
  #idle: NodeJS.Timeout | undefined

  constructor(service: Service, lease: Lease, ex: Exchange, client: Socket, head: Buffer, log: Logger) {
    this.#service = service
    this.#lease = lease
    this.#ex = ex
    this.#client = client
    this.#log = log
    const host = lease.host
    const config = service.config
    const secure = service.instanceTls(host)
    this.#parser = new H1Parser('response', this, MAX_HEADER_BYTES)
    this.#parser.skipBody = ex.method === 'HEAD'

    const up = connectInstance(host.host, host.port, secure)
    this.#upstream = up
    up.on('error', this.#onUpstreamError)
    up.once('close', this.#onUpstreamClose)
    up.on('data', this.#onUpstreamData)
    up.setTimeout(config.connectTimeoutMs, this.#onConnectTimeout)
    up.once(readyEvent(secure), this.#onConnect)
    this.#timer = setTimeout(this.#onTimeout, config.timeoutMs).unref()

    // Written now: net and tls sockets hold it until connected (TLS: until verified).
    up.write(upgradeRequestHead(ex, service.upstreamHeaders(ex), joinHostPort(host.host, host.port)), 'latin1')

    if (head.length > 0) this.#hold(head)
    // Read from the start, so a client that goes away (FIN or reset) is seen in every phase.
    client.on('data', this.#onEarly)
    // No half-open tunnels (WebSocket closes in-band): the client's FIN ends the tunnel.
    client.once('end', () => client.destroy())
    client.once('close', this.#onClientClose)
    if (client.destroyed) this.#onClientClose()
  }

  readonly #onConnect = (): void => {
    this.#connected = true
    this.#upstream.setTimeout(0)
  }

  readonly #onConnectTimeout = (): void => {
    this.#fail('connect', `connect timeout after ${this.#service.config.connectTimeoutMs} ms`)
  }

  readonly #onTimeout = (): void => {
    this.#fail('timeout', `no answer to the upgrade within ${this.#service.config.timeoutMs} ms`)
  }

  #hold(chunk: Buffer): void {
    this.#early.push(chunk)
    this.#earlyBytes += chunk.length
    if (this.#earlyBytes > EARLY_BYTES_MAX) this.#client.pause()
  }

  readonly #onEarly = (chunk: Buffer): void => {
    if (this.#phase === 'handshake') this.#hold(chunk)
    // A relayed answer ends the connection: what the client sends meanwhile is dropped.
  }

  readonly #onUpstreamData = (data: Buffer): void => {
    if (this.#phase === 'relay') this.#armIdle('relayed answer stalled')
    const ret = this.#parser.execute(data)
    if (typeof ret !== 'number') {
      if (this.#phase === 'handshake') this.#fail('reset', `malformed answer to an upgrade (${ret.code})`)
      else this.#client.destroy() // cut in the middle of a relayed answer
      return
    }
    if (this.#switching !== null) this.#open(data.subarray(ret))
  }

  onHead(_major: number, _minor: number, headers: string[], _method: string, _url: string, status: number, text: string): number {
    if (this.#phase !== 'handshake') return 0
    if (status === 101) {
      this.#switching = ResponseHead.fromRaw(status, text, headers)
      this.#upgradeToken = rawHeader(headers, 'upgrade')
      // Stop after this head: what follows is the tunnel's, not HTTP.
      return RAW_BODY
    }
    if (status < 200) {
      this.#interim = true
      return 0
    }
    clearTimeout(this.#timer)
    this.#phase = 'relay'
    this.#armIdle('relayed answer stalled')
    const latencyMs = performance.now() - this.#startedAt
    this.#outcome = isGatewayStatus(status) ? { ok: false, kind: 'status', latencyMs } : { ok: true, latencyMs }
    this.#ex.writeResponseHead(ResponseHead.fromRaw(status, text, headers))
    return 0
  }

  onBody(chunk: Buffer): void {
    if (this.#phase !== 'relay') return
    // A slow client holds the instance back instead of our memory.
    if (!this.#ex.write(chunk) && !this.#upstream.isPaused()) {
      this.#upstream.pause()
      this.#client.once('drain', () => this.#upstream.resume())
    }
  }

  onComplete(): void {
    if (this.#interim) {
      this.#interim = false
      return
    }
    if (this.#phase !== 'relay') return
    this.#phase = 'done'
    clearTimeout(this.#idle)
    this.#ex.end()
    this.#client.end()
    this.#upstream.destroy()
    this.#settle()
  }

  /** The instance switched protocols: its 101 goes to the client, then bytes flow both ways. */
  #open(rest: Buffer): void {
    const head = this.#switching!
    this.#switching = null
    this.#phase = 'open'
    clearTimeout(this.#timer)
    this.#parser.close()
    this.#outcome = { ok: true, latencyMs: performance.now() - this.#startedAt }
    const up = this.#upstream
    const client = this.#client
    up.off('data', this.#onUpstreamData)
    client.off('data', this.#onEarly)
    const token = this.#upgradeToken === undefined ? '' : `upgrade: ${this.#upgradeToken}\r\n`
    client.write(`HTTP/1.1 101 ${head.text || 'Switching Protocols'}\r\n${head.lines}connection: upgrade\r\n${token}\r\n`, 'latin1')
    if (rest.length > 0) client.write(rest)
    for (const chunk of this.#early) up.write(chunk)
    this.#early.length = 0
    if (client.isPaused()) client.resume()
    this.#relay(up, client)
    this.#relay(client, up)
  }

  /**
   * Bytes from one side to the other, the reader's pace: `from` pauses while `to` needs draining.
   * A side that stays undrained for bodyTimeoutMs closes the tunnel (nginx's send_timeout): paused,
   * `from` would not even see its own peer leave (a reset is only read by a reading socket), and
   * the tunnel, its descriptors and its lease would stay for as long as the reader stalls.
   */
  #relay(from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (to.write(chunk)) return
      from.pause()
      this.#armIdle('tunnel stalled: a side did not read')
    })
    to.on('drain', () => {
      clearTimeout(this.#idle)
      from.resume()
    })
    // The instance's clean end is passed on (the client's socket ends once flushed); the client's
    // FIN ends the tunnel (no half-open tunnels, see the constructor).
    if (from === this.#upstream) from.once('end', () => to.end())
  }

  #armIdle(why: string): void {
    clearTimeout(this.#idle)
    const ms = this.#service.config.bodyTimeoutMs
    if (ms <= 0 || this.#phase === 'done') return
    this.#idle = setTimeout(() => {
      this.#log.warn({ service: this.#service.name, phase: this.#phase, afterMs: ms }, why)
      this.#client.destroy()
      this.#upstream.destroy()
    }, ms).unref()
  }

  readonly #onUpstreamError = (err: Error): void => {
    if (this.#phase !== 'handshake') return // 'close' follows, and ends the client's side
    const kind = this.#connected ? classifyTransportError(err) : 'connect'
    const code = (err as { code?: string }).code ?? err.name
    this.#fail(kind, `upstream ${kind === 'connect' ? 'connect' : 'connection'} error (${code})`, err)
  }

  readonly #onUpstreamClose = (): void => {
    switch (this.#phase) {
      case 'handshake':
        this.#fail('reset', 'upstream closed the connection before answering the upgrade')
        break
      case 'relay':
        // An answer delimited by the close ends here (onComplete); any other is cut short.
        this.#parser.finish()
        if (this.#phase === 'relay') this.#client.destroy()
        break
      case 'open':
        // A clean end was passed on by the pipe (the client's socket ends once flushed); a reset is passed on as one.
        if (!this.#upstream.readableEnded) this.#client.destroy()
        break
      case 'done':
        break
    }
  }

  /** In every phase: the client gone means the instance's socket goes too. */
  readonly #onClientClose = (): void => {
    clearTimeout(this.#timer)
    clearTimeout(this.#idle)
    this.#phase = 'done'
    this.#upstream.destroy()
    this.#parser.close()
    this.#settle()
  }

  /** The handshake failed before the instance answered: 502 (504 for the deadline) to the client. */
  #fail(kind: FailureKind, message: string, cause?: unknown): void {
    if (this.#phase !== 'handshake') return
    this.#phase = 'done'
    clearTimeout(this.#timer)
    this.#parser.close()
    this.#upstream.destroy()
    const err = new UpstreamError(kind, message, false, cause)
    this.#outcome = { ok: false, kind, latencyMs: performance.now() - this.#startedAt }
    this.#settle()
    const host = this.#lease.host
    this.#log.warn({ service: this.#service.name, upstream: joinHostPort(host.host, host.port), kind, err: message }, 'upgrade failed')
    if (this.#client.destroyed) return
    sendError(this.#ex, err.statusCode ?? 502, err.code, err.message, this.#service.name, true)
    this.#client.end()
  }

  /** Exactly once (Lease.release is idempotent): a client gone before any answer says nothing of the instance. */
  #settle(): void {
    this.#lease.release(this.#outcome ?? { ok: null })
  }
}
