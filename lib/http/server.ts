// The client-facing listener: route, hand to the service, and shut down in order.

import type { Buffer } from 'node:buffer'
import type { AddressInfo } from 'node:net'
import type { Socket } from 'node:net'
import type { SecureContextOptions } from 'node:tls'
import { H1Server } from './h1/front.js'
import type { FrontOptions } from './h1/front.js'
import type { Exchange, Refusal } from './h1/exchange.js'
import type { ClientExchange } from './client-side.js'
import { H2Front } from './h2/front.js'
import type { Router } from './routes.js'
import { accessEntry } from './access-entry.js'
import { UpgradeTunnel } from './websocket.js'
import { sendError } from './h1/send-error.js'
import { sendProxyError } from './grpc/answer.js'
import type { Service } from './service.js'
import type { HostPort } from '../config.js'
import type { AccessLog, Logger } from '../log.js'

export class ProxyServer {
  readonly #server: H1Server
  /** HTTP/2 clients (ALPN h2, or h2c on a plain listener); null when the config offers neither. */
  readonly #h2: H2Front | null
  #router: Router<Service>
  readonly #log: Logger
  /** Sockets handed to upgrade tunnels, cut at the end of a shutdown. */
  readonly #tunnels = new Set<Socket>()
  readonly #tunnel: UpgradeTunnel
  #inFlight = 0
  #draining = false
  #idle: (() => void) | null = null

  readonly #access: AccessLog | null

  constructor(router: Router<Service>, logger: Logger, options: FrontOptions & { readonly accessLog?: AccessLog } = {}) {
    this.#router = router
    this.#log = logger
    this.#access = options.accessLog ?? null
    // Node's parser, but sockets read the portable way (issue 15): one warn line, naming why.
    const onStreamReading = (reason: string) =>
      logger.warn({ parser: 'native', reading: 'stream', reason }, `HTTP/1.1 sockets: read through their stream, the portable path (${reason})`)
    // The front's last-resort guard answered (502) or cut the connection; the cause goes here.
    const onHandlerError = (err: unknown, kind: string) => logger.error({ err, kind }, 'request handler threw; answered 502 or cut the connection')
    const onTlsRefused = (code: string, client: string | undefined) => logger.info({ code, client }, 'TLS renegotiation refused; connection closed')
    const secure = options.tls !== undefined
    const h2 = secure ? (options.alpn ?? []).includes('h2') : options.h2c === true
    this.#h2 = h2 ? new H2Front({ request: this.#onRequest, refuse: this.#onRefuse }, { ...(options.limits === undefined ? {} : { limits: options.limits }), onHandlerError }) : null
    const front = this.#h2
    const handlers = { request: this.#onRequest, refuse: this.#onRefuse, upgrade: this.#onUpgrade, ...(front === null ? {} : { h2: (socket: Socket, head: Buffer | null) => front.accept(socket, head) }) }
    this.#server = new H1Server(handlers, { onStreamReading, onHandlerError, onTlsRefused, ...options })
    this.#tunnel = new UpgradeTunnel(logger)
  }

  get inFlight(): number {
    return this.#inFlight
  }

  /** A reload's routes: every request from now on is routed by them (those in flight keep theirs). */
  setRouter(router: Router<Service>): void {
    this.#router = router
  }

  /** A reload's certificate and key (HTTPS listeners only). */
  setSecureContext(options: SecureContextOptions): void {
    this.#server.setSecureContext(options)
  }

  readonly #onRequest = (ex: ClientExchange): void => {
    if (this.#draining) {
      sendProxyError(ex, 503, 'ZP_ERR_SHUTTING_DOWN', 'proxy is shutting down', undefined, true)
      this.#logUnrouted(ex)
      return
    }
    const url = ex.url
    if (url.charCodeAt(0) !== 47 /* '/' */) {
      sendError(ex, 400, 'ZP_ERR_BAD_REQUEST', 'request target must be a path (origin-form)', undefined, true)
      this.#logUnrouted(ex)
      return
    }
    const route = this.#router.match(ex)
    if (route === null) {
      sendProxyError(ex, 404, 'ZP_ERR_NO_ROUTE', 'no service matches this request')
      this.#logUnrouted(ex)
      return
    }
    const service = route.pick(ex)
    ex.url = route.rewrite(url)
    this.#inFlight++
    service.handle(ex, this.#done)
  }

  /** Refused before routing: answered here, and the connection closes after it. */
  readonly #onRefuse = (ex: ClientExchange, r: Refusal): void => {
    sendProxyError(ex, r.status, r.code, r.message, undefined, true)
    this.#logUnrouted(ex)
  }

  /** The access log's line for a request answered here, before any service saw it. */
  #logUnrouted(ex: ClientExchange): void {
    this.#access?.(accessEntry(null, ex, ex.statusCode, null, 0, 0))
  }

  /** `Upgrade:` requests (WebSocket): routed like any request, then tunnelled. */
  readonly #onUpgrade = (ex: Exchange, socket: Socket, head: Buffer): void => {
    this.#tunnels.add(socket)
    socket.once('close', () => this.#tunnels.delete(socket))
    // Once our side of a tunnel (or of the answer refusing one) is ended, the socket goes: a
    // client that never closes, or whose FIN or reset is never read, would hold its file
    // descriptor for ever.
    socket.once('finish', () => socket.destroy())
    const route = this.#draining ? null : this.#router.match(ex)
    if (route === null) {
      if (this.#draining) sendError(ex, 503, 'ZP_ERR_SHUTTING_DOWN', 'proxy is shutting down', undefined, true)
      else sendError(ex, 404, 'ZP_ERR_NO_ROUTE', 'no service matches this request', undefined, true)
      socket.end()
      return
    }
    const service = route.pick(ex)
    ex.url = route.rewrite(ex.url)
    this.#tunnel.handle(service, ex, socket, head)
  }

  readonly #done = (): void => {
    this.#inFlight--
    if (this.#inFlight === 0 && this.#idle !== null) this.#idle()
  }

  listen(at: HostPort): Promise<AddressInfo> {
    return this.#server.listen(at.port, at.host)
  }

  address(): AddressInfo | null {
    return this.#server.address() as AddressInfo | null
  }

  /**
   * Stops accepting, answers late requests on open connections with 503 + Connection: close, waits
   * up to `timeoutMs` for in-flight requests, then cuts whatever is left.
   */
  async close(timeoutMs: number): Promise<void> {
    if (this.#draining) return
    this.#draining = true
    const closed = Promise.all([this.#server.close(), this.#h2?.close()])
    if (this.#inFlight > 0) {
      const idle = new Promise<void>((resolve) => (this.#idle = resolve))
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)))
      const outcome = await Promise.race([idle, timeout])
      clearTimeout(timer)
      if (outcome === 'timeout') this.#log.warn({ inFlight: this.#inFlight, timeoutMs }, 'shutdown timeout reached, cutting in-flight requests')
    }
    this.#server.destroyAll()
    this.#h2?.destroyAll()
    for (const s of this.#tunnels) s.destroy()
    await closed
  }
}
