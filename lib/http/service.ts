// One service's request path: pick an instance, forward, and on failure try another one.

import { performance } from 'node:perf_hooks'
import type { Readable } from 'node:stream'
import type { Balancer, Host, Lease } from '../balancing/balancer.js'
import type { ClientExchange } from './client-side.js'
import type { ServiceConfig } from '../config.js'
import { ProxyError, UpstreamError } from '../errors.js'
import { forwardAttempt, upstreamHeaders } from './forward.js'
import type { HeldBody, InstanceTls } from './h1/upstream.js'
import type { UpstreamProtocol } from './transport.js'
import type { AccessLog, Logger } from '../log.js'
import { HealthChecker } from '../balancing/health.js'
import { isGatewayStatus, isGrpcRetryable, isRetryable, retryAfterMs } from '../balancing/retry.js'
import { RetryBudget } from '../balancing/retry-budget.js'
import { accessEntry } from './access-entry.js'
import { grpcCallOf, sendProxyError } from './grpc/answer.js'
import { preflightHeaders } from './grpc/call.js'
import { GrpcStatus, parseGrpcStatus } from './grpc/status.js'
import { answerFailure } from './answer-failure.js'
import { InstancePools } from './instance-pools.js'
import { readBody } from './read-body.js'
import { RequestState } from './request-state.js'
import type { AttemptCallback, AttemptEnd, StatusDecision } from './request-state.js'
import { NO_METRICS } from './service-metrics.js'
import type { ServiceMetrics } from './service-metrics.js'
import { upstreamTlsContext } from './upstream-tls.js'
import { joinHostPort } from '../host-port.js'

export interface ServiceOptions {
  readonly config: ServiceConfig
  readonly balancer: Balancer
  readonly logger: Logger
  readonly metrics?: ServiceMetrics
  /** Pass request headers whose names have `_` (config `underscoresInHeaders`). */
  readonly underscoresInHeaders?: boolean
  /** Where each request's access log line goes (config `log.access`); none when absent. */
  readonly accessLog?: AccessLog
}

export class Service {
  readonly name: string
  readonly config: ServiceConfig
  readonly balancer: Balancer
  readonly #log: Logger
  readonly #pools: InstancePools
  readonly #budget: RetryBudget
  readonly #health: HealthChecker | null
  readonly #metrics: ServiceMetrics
  readonly #underscores: boolean
  readonly #access: AccessLog | null
  #closed = false

  constructor(opts: ServiceOptions) {
    this.name = opts.config.name
    this.config = opts.config
    this.balancer = opts.balancer
    this.#log = opts.logger.child({ service: this.name })
    this.#budget = new RetryBudget(opts.config.retry.budget)
    this.#metrics = opts.metrics ?? NO_METRICS
    this.#underscores = opts.underscoresInHeaders ?? false
    this.#access = opts.accessLog ?? null
    const tls = upstreamTlsContext(opts.config.upstreamTls)
    this.#pools = new InstancePools(opts.config, tls)
    const pools = this.#pools
    this.#health = opts.config.healthCheck
      ? new HealthChecker(this.balancer, opts.config.healthCheck, opts.logger, tls, (h) => ({ protocol: pools.protocol(h), tls: pools.instanceTls(h) !== null }))
      : null
    this.balancer.onRemoved = (hosts) => this.#pools.remove(hosts)
  }

  /**
   * How `host` is reached: over TLS verified with upstreamTls when it says it speaks TLS (scheme
   * https, Curator sslPort), else plain. Pooled requests and upgrade tunnels both ask here.
   */
  instanceTls(host: Host): InstanceTls {
    return this.#pools.instanceTls(host)
  }

  /** What `host` speaks (its znode's protocol, else upstreamProtocol): upgrades and health checks ask here too. */
  instanceProtocol(host: Host): UpstreamProtocol {
    return this.#pools.protocol(host)
  }

  /** The forwarding policy's headers for `ex` (forward.ts): the same for requests and upgrades. */
  upstreamHeaders(ex: ClientExchange): string[] {
    return upstreamHeaders(ex, this.#underscores)
  }

  /** Starts what runs in the background (active health checks). */
  start(): void {
    this.#health?.start()
  }

  /**
   * Proxies one request; always ends in a response (or a cut connection once one started), then
   * calls `done`. Its attempts run on callbacks, without a promise.
   */
  handle(ex: ClientExchange, done: () => void): void {
    let state: RequestState | null = null
    try {
      if (ex.method === 'OPTIONS' && this.config.grpcWeb?.cors !== undefined && this.#preflight(ex, done)) return
      const grpc = grpcCallOf(ex, this.config.grpcWeb?.cors)
      const headers = this.upstreamHeaders(ex)
      // A call's grpc-timeout bounds it, within the service's own deadline.
      const timeoutMs = grpc?.timeoutMs != null ? Math.min(grpc.timeoutMs, this.config.timeoutMs) : this.config.timeoutMs
      state = new RequestState(ex, headers, Date.now() + timeoutMs, done, this.#decideStatus, this.#attemptEnded)
      state.grpc = grpc
      if (grpc?.invalid != null) {
        answerFailure(ex, new ProxyError('ZP_ERR_BAD_REQUEST', grpc.invalid, { statusCode: 400 }), this.name, this.#log, grpc)
        this.#finish(state)
        return
      }
      this.#budget.onRequest()
      if (this.balancer.usesHashKey) state.hashKey = this.balancer.hashKey({ headers: ex.headers, remoteAddress: ex.remoteAddress })
      // (The first attempt starts in the same turn as the request: one clock read for both.)
      if (ex.body === null) this.#attempt(state, this.#afterAttempt, state.startedAt)
      else this.#readThenAttempt(state).catch((err: unknown) => this.#crashed(state!, err))
    } catch (err) {
      this.#crashed(state ?? new RequestState(ex, [], 0, done, this.#decideStatus, this.#attemptEnded), err)
    }
  }

  /**
   * A CORS preflight for gRPC-Web (config grpcWeb.cors) from an origin let in: answered here with
   * 204; true when it was. Others go on to the instance like any request.
   */
  #preflight(ex: ClientExchange, done: () => void): boolean {
    const h = ex.headers
    if (h['access-control-request-method'] === undefined) return false
    const origin = h.origin
    const headers = preflightHeaders(this.config.grpcWeb?.cors, typeof origin === 'string' ? origin : undefined)
    if (headers === null) return false
    ex.writeHead(204, headers)
    ex.end()
    this.#access?.(accessEntry(this.name, ex, 204, null, 0, 0))
    done()
    return true
  }

  /**
   * The request path's last-resort guard, for a throw from anything it calls (a strategy, the
   * access log, a bug) now or in a later turn: the client gets a 502 if nothing went out yet, else
   * its connection is cut; a lease still held is released; `done` is called once; a log line says
   * what threw. The process keeps serving.
   */
  #crashed(state: RequestState, err: unknown): void {
    this.#log.error({ err }, 'request handler threw; answered 502 or cut the connection')
    const lease = state.lease
    state.lease = null
    state.onSettled = null
    const ex = state.ex
    try {
      lease?.release({ ok: null })
      if (!ex.finished && !ex.destroyed) {
        if (ex.headersSent) ex.destroy()
        else sendProxyError(ex, 502, 'ZP_ERR_INTERNAL', 'internal error', this.name, true, state.grpc)
      }
    } catch {
      ex.destroy()
    }
    if (!state.over) {
      state.over = true
      state.done()
    }
  }

  async #readThenAttempt(state: RequestState): Promise<void> {
    const body = state.ex.body!
    const len = state.ex.contentLength
    // A body known to be too big streams at once; one of unknown length (chunked) is read up
    // to the limit, and streams on from there when it turns out bigger.
    if (len > this.config.retry.bufferBytes) state.streamed = true
    else if (len < 0 && state.grpc !== null) {
      // A gRPC call's messages go on as they come (a bidi call waits for answers before it sends
      // more); what went is kept up to the same bound, so an UNAVAILABLE can still be retried.
      state.streamed = true
      state.recordBytes = this.config.retry.bufferBytes
    } else {
      try {
        const read = await readBody(body, this.config.retry.bufferBytes)
        if (read.complete) state.body = read.body
        else {
          state.streamed = true
          state.prefix = read.prefix
        }
      } catch (err) {
        answerFailure(state.ex, err, this.name, this.#log, state.grpc)
        this.#finish(state)
        return
      }
    }
    this.#attempt(state, this.#afterAttempt)
  }

  /**
   * How every attempt ends, the first and each retry: the answer went out, or the failure is tried
   * again elsewhere, or it is answered. One loop on callbacks: no promise per request, and a throw
   * anywhere in it reaches the same guard (#crashed).
   */
  readonly #afterAttempt: AttemptCallback = (state, err) => {
    if (err === null) this.#finish(state)
    else if (this.#mayRetry(state, err)) this.#retry(state)
    else {
      answerFailure(state.ex, err, this.name, this.#log, state.grpc)
      this.#finish(state)
    }
  }

  /** At most retry.attempts - 1 retries; within that, the policy and the budget decide. */
  #mayRetry(state: RequestState, err: Error): boolean {
    // The count first: a yes from #shouldRetry is paid for from the budget.
    if (state.retries >= this.config.retry.attempts - 1) return false
    return this.#shouldRetry(state, err)
  }

  /**
   * The next attempt. The first retry goes at once (to another instance: nothing to wait for);
   * later ones after a jittered exponential backoff, backoffMs x 2^(n-1) x [1, 2) before the n-th
   * after the first, capped at max(backoffMs, 1 s): the schedule p-retry gave this loop before.
   */
  #retry(state: RequestState): void {
    const n = state.retries++
    const backoffMs = this.config.retry.backoffMs
    const ms = n === 0 ? 0 : Math.min(Math.round((Math.random() + 1) * backoffMs * 2 ** (n - 1)), Math.max(backoffMs, 1000))
    if (ms > 0) setTimeout(this.#retryLater, ms, state)
    else this.#attempt(state, this.#afterAttempt)
  }

  /** A retry after its backoff: a timer's turn, so its own guard. */
  readonly #retryLater = (state: RequestState): void => {
    try {
      this.#attempt(state, this.#afterAttempt)
    } catch (err) {
      this.#crashed(state, err)
    }
  }

  #finish(state: RequestState): void {
    if (state.over) return
    const ex = state.ex
    // 499 (nginx's): the client went away before its answer was complete.
    const status = ex.finished ? ex.statusCode : 499
    const ms = performance.now() - state.startedAt
    this.#metrics.request(status, ms / 1000, ex.protocol)
    // A call the client left before its status is CANCELLED, as the client itself sees it.
    const grpcStatus = state.grpc === null ? undefined : ex.finished ? (state.grpc.status ?? GrpcStatus.UNKNOWN) : GrpcStatus.CANCELLED
    if (grpcStatus !== undefined) this.#metrics.grpcResponse?.(grpcStatus)
    this.#access?.(accessEntry(this.name, ex, status, state.lastHost, state.attempts, Math.round(ms * 1000) / 1000, grpcStatus))
    state.over = true
    state.done()
  }

  /**
   * Whether to try `err`'s request again elsewhere; a yes is paid for from the retry budget.
   * `grpcStatus`: a gRPC call's status that came before any message (retry.on's `grpc-*`).
   */
  #shouldRetry(state: RequestState, err: unknown, grpcStatus?: number): boolean {
    if (!(err instanceof UpstreamError)) return false
    if (state.retryGranted) {
      state.retryGranted = false
      return true
    }
    if (state.attempts >= this.config.retry.attempts || Date.now() >= state.deadline) return false
    if (state.tried === null || !this.balancer.hasUntried(state.tried)) return false
    const retryable = grpcStatus !== undefined ? state.replayable && isGrpcRetryable(this.config.retry, grpcStatus) : isRetryable(this.config.retry, {
      method: state.ex.method,
      kind: err.kind,
      idempotencyKey: state.ex.headers['idempotency-key'] !== undefined,
      replayable: state.replayable,
      responseStarted: err.responseStarted,
    })
    if (!retryable) return false
    if (!this.#budget.tryRetry()) {
      this.#metrics.budgetExhausted()
      this.#log.debug({ kind: err.kind }, 'retry budget spent; passing the failure on')
      return false
    }
    this.#metrics.retry()
    return true
  }

  /** One attempt at one instance; `onSettled(state, null)` once the answer went out, or `onSettled(state, err)`. */
  #attempt(state: RequestState, onSettled: AttemptCallback, now = performance.now()): void {
    const lease = this.balancer.acquire(state.firstKey === null ? null : state.tried, state)
    if (lease === null) {
      // Report the failure that made us look further rather than "no instance".
      onSettled(state, state.lastError ?? new ProxyError('ZP_ERR_NO_ENDPOINT', `no instance of service "${this.name}" is available`))
      return
    }
    state.attemptAt(lease.host.key)
    state.lastHost = lease.host
    state.attempts++
    const remaining = state.deadline - Date.now()
    if (remaining <= 0) {
      lease.release({ ok: null })
      onSettled(state, new UpstreamError('timeout', 'request deadline passed', false))
      return
    }
    const pool = this.#pools.get(lease.host)
    const grpc = state.grpc
    let headers = state.headers
    let body: HeldBody | Readable | null = state.nextBody()
    let contentLength = state.ex.contentLength
    let translate = false
    if (grpc !== null) {
      translate = grpc.translates(pool.protocol)
      headers = grpc.attemptHeaders(headers, translate, remaining)
      try {
        body = grpc.attemptBody(body, translate)
      } catch {
        lease.release({ ok: null })
        onSettled(state, new ProxyError('ZP_ERR_BAD_REQUEST', 'the grpc-web-text body is not base64', { statusCode: 400 }))
        return
      }
      if (translate && grpc.kind === 'grpc-web-text') contentLength = -1
    }
    state.lease = lease
    state.onSettled = onSettled
    state.attemptStartedAt = now
    forwardAttempt(
      pool,
      state.ex,
      {
        path: state.ex.url,
        method: state.ex.method,
        headers,
        body,
        contentLength,
        headersTimeoutMs: Math.min(this.config.retry.perTryTimeoutMs, remaining),
        startedAt: now,
        bodyTimeoutMs: this.config.bodyTimeoutMs,
      },
      state,
      grpc === null ? undefined : (sink) => grpc.sink(sink, translate, grpc.timeoutMs === null ? null : state.deadline),
    )
  }

  /** Called from the upstream connection's events: a throw past here would end the process. */
  readonly #attemptEnded: AttemptEnd = (state, err, status, latencyMs) => {
    const lease = state.lease
    const onSettled = state.onSettled
    // The guard gave up on this request already (and released the lease).
    if (lease === null || onSettled === null) return
    state.lease = null
    state.onSettled = null
    try {
      if (err === null) {
        // For a gRPC call, UNAVAILABLE is the instance's failure (outlier detection counts it).
        const gatewayError = state.grpc !== null ? state.grpc.status === GrpcStatus.UNAVAILABLE : isGatewayStatus(status)
        lease.release(gatewayError ? { ok: false, kind: 'status', latencyMs } : { ok: true, latencyMs })
        this.#metrics.attempt(gatewayError ? 'status' : 'ok')
      } else {
        this.#settleFailure(lease, err, performance.now() - state.attemptStartedAt)
        state.lastError = err
      }
      onSettled(state, err)
    } catch (e) {
      this.#crashed(state, e)
    }
  }

  #settleFailure(lease: Lease, err: unknown, latencyMs: number): void {
    if (err instanceof UpstreamError) {
      lease.release({ ok: false, kind: err.kind, latencyMs })
      this.#metrics.attempt(err.kind)
      this.#log.debug({ upstream: joinHostPort(lease.host.host, lease.host.port), kind: err.kind, err: err.message }, 'attempt failed')
    } else lease.release({ ok: null })
  }

  /** Decided before a byte goes to the client: drop a gateway error and retry elsewhere? */
  readonly #decideStatus: StatusDecision = (state, head) => {
    if (state.grpc !== null) {
      // Only a trailers-only head carries grpc-status here: the call is not committed yet.
      const code = parseGrpcStatus(head.header('grpc-status'))
      if (code === null || code === GrpcStatus.OK) return false
      state.retryGranted = this.#shouldRetry(state, new UpstreamError('status', '', false), code)
      return state.retryGranted
    }
    if (!isGatewayStatus(head.status)) return false
    // An upstream asking for more time than the request has left is answered as it is.
    const after = retryAfterMs(head.header('retry-after'), Date.now())
    if (after !== null && after > state.deadline - Date.now()) return false
    state.retryGranted = this.#shouldRetry(state, new UpstreamError('status', '', false))
    return state.retryGranted
  }

  /** Closes every pool, letting requests already queued on them finish. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.balancer.close()
    await this.#health?.close()
    await this.#pools.close()
  }
}
