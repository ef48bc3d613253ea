// One service's request path: pick an instance, forward, and on failure try another one.

import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { createSecureContext } from 'node:tls'
import type { SecureContext } from 'node:tls'
import type { Buffer } from 'node:buffer'
import type { Readable } from 'node:stream'
import pRetry from 'p-retry'
import type { Balancer, Host, Lease } from '../balancing/balancer.js'
import type { Exchange } from './h1/exchange.js'
import { UpstreamClock, UpstreamPool } from './h1/upstream.js'
import type { ServiceConfig } from '../config.js'
import { ProxyError, UpstreamError, clientGone, isClientGone } from '../errors.js'
import { BodyTap, forwardAttempt, upstreamHeaders } from './forward.js'
import { sendError } from './h1/send-error.js'
import type { AttemptListener } from './forward.js'
import type { ResponseHead } from './h1/headers.js'
import type { HeldBody, InstanceTls } from './h1/upstream.js'
import type { AccessLog, Logger } from '../log.js'
import { HealthChecker } from '../balancing/health.js'
import { isGatewayStatus, isRetryable, retryAfterMs } from '../balancing/retry.js'
import { RetryBudget } from '../balancing/retry-budget.js'

export type AttemptOutcome = 'ok' | 'connect' | 'reset' | 'timeout' | 'status'

/** What a service reports (ops/metrics.ts counts it); all no-ops when metrics are off. */
export interface ServiceMetrics {
  request(status: number, seconds: number): void
  attempt(outcome: AttemptOutcome): void
  retry(): void
  budgetExhausted(): void
}

export const NO_METRICS: ServiceMetrics = {
  request() {},
  attempt() {},
  retry() {},
  budgetExhausted() {},
}

type StatusDecision = (state: RequestState, head: ResponseHead) => boolean
/** How an attempt ended: `err` null once the whole answer went to the client. */
type AttemptCallback = (state: RequestState, err: Error | null) => void
type AttemptEnd = (state: RequestState, err: Error | null, status: number, latencyMs: number) => void

const NO_CHUNKS: readonly Buffer[] = []

/**
 * What one request carries through its attempts. It is also what an attempt reports to (the
 * AttemptListener), so the request path makes no closure per request: the service's decisions
 * are shared functions that get the state passed in.
 */
class RequestState implements AttemptListener {
  readonly ex: Exchange
  readonly headers: string[]
  readonly deadline: number
  readonly startedAt = performance.now()
  readonly done: () => void
  readonly #decide: StatusDecision
  readonly #ended: AttemptEnd
  /** The attempt in flight: its lease, its start, and whom to tell how it ended. */
  lease: Lease | null = null
  attemptStartedAt = 0
  /**
   * Whom to tell how the attempt in flight ended. Not named `then`: a field of that name would make
   * the state a thenable, which `await` or `Promise.resolve` would call.
   */
  onSettled: AttemptCallback | null = null
  /** Buffered body (replayable), or null when the body streams (see `tap`). */
  body: HeldBody | null = null
  /** The streamed body of the current attempt. */
  tap: BodyTap | null = null
  streamed = false
  /** What was read of a streamed body before it proved too big to hold; sent ahead of the rest. */
  prefix: readonly Buffer[] = NO_CHUNKS
  /** The instance of the first attempt; a Set is only made when a request is retried. */
  firstKey: string | null = null
  #tried: Set<string> | null = null
  /** Affinity key for consistent-hash (PickContext). */
  hashKey: string | undefined = undefined
  attempts = 0
  /** The instance of the latest attempt (the access log's). */
  lastHost: Host | null = null
  lastError: Error | null = null
  /** A retry was already granted (and paid for from the budget) for the failure in flight. */
  retryGranted = false
  /** `done` was called: the request is over for the server (set once, by Service.#finish). */
  over = false

  constructor(ex: Exchange, headers: string[], deadline: number, done: () => void, decide: StatusDecision, ended: AttemptEnd) {
    this.ex = ex
    this.headers = headers
    this.deadline = deadline
    this.done = done
    this.#decide = decide
    this.#ended = ended
  }

  retryOnStatus(head: ResponseHead): boolean {
    return this.#decide(this, head)
  }

  attemptEnded(err: Error | null, status: number, latencyMs: number): void {
    this.#ended(this, err, status, latencyMs)
  }

  /** The keys of every instance tried so far (null before the first attempt). */
  get tried(): Set<string> | null {
    if (this.#tried === null && this.firstKey !== null) this.#tried = new Set([this.firstKey])
    return this.#tried
  }

  /** Records the instance of an attempt; no allocation for the first one. */
  attemptAt(key: string): void {
    if (this.firstKey === null) this.firstKey = key
    else this.tried!.add(key)
  }

  get replayable(): boolean {
    return !this.streamed || this.tap === null || !this.tap.started
  }

  nextBody(): HeldBody | BodyTap | null {
    if (!this.streamed) return this.body
    this.tap = new BodyTap(this.ex.body!, this.prefix)
    return this.tap
  }
}

type ReadBody = { readonly complete: true; readonly body: HeldBody } | { readonly complete: false; readonly prefix: Buffer[] }

/**
 * Reads a body whole when it fits in `limit` bytes; otherwise stops (the request paused) and hands
 * back what it read, to be sent ahead of the rest. Rejects if the client goes away first.
 */
function readBody(req: Readable, limit: number): Promise<ReadBody> {
  return new Promise((resolve, reject) => {
    // Failed before anyone read it (too slow, too large, malformed): its error was emitted already.
    if (req.destroyed && !req.readableEnded) {
      reject(req.errored ?? clientGone('client aborted the request body'))
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    const onData = (c: Buffer) => {
      chunks.push(c)
      size += c.length
      if (size <= limit) return
      req.pause()
      detach()
      resolve({ complete: false, prefix: chunks })
    }
    const onEnd = () => {
      detach()
      // Kept as read: joining them would copy the body once more (at 64 KiB bodies that extra
      // external memory alone set off a mark-compact every 70-90 ms).
      resolve({ complete: true, body: chunks })
    }
    const onError = (err: Error) => {
      detach()
      reject(err)
    }
    const detach = () => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
    }
    req.on('data', onData)
    req.once('end', onEnd)
    req.once('error', onError)
  })
}

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
  /** One pool per instance; a Host is replaced when its address changes, so this follows it. */
  readonly #pools = new Map<Host, UpstreamPool>()
  readonly #clock = new UpstreamClock()
  readonly #budget: RetryBudget
  readonly #health: HealthChecker | null
  readonly #metrics: ServiceMetrics
  readonly #underscores: boolean
  /** How instances that speak TLS are verified (upstreamTls), made once for every connection. */
  readonly #tls: { readonly context: SecureContext | null; readonly servername: string | undefined }
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
    this.#tls = upstreamTlsContext(opts.config.upstreamTls)
    this.#health = opts.config.healthCheck ? new HealthChecker(this.balancer, opts.config.healthCheck, opts.logger, this.#tls) : null
    // Instances that leave: finish what is queued on their pools, then let the pools go.
    this.balancer.onRemoved = (hosts) => {
      for (const h of hosts) {
        const pool = this.#pools.get(h)
        if (pool === undefined) continue
        this.#pools.delete(h)
        pool.close().catch(() => {})
      }
    }
  }

  #pool(host: Host): UpstreamPool {
    let pool = this.#pools.get(host)
    if (pool === undefined || pool.closed) {
      const c = this.config
      pool = new UpstreamPool({
        host: host.host,
        port: host.port,
        connections: c.maxConnectionsPerInstance,
        keepAliveTimeoutMs: c.keepAliveTimeoutMs,
        connectTimeoutMs: c.connectTimeoutMs,
        clock: this.#clock,
        tls: this.instanceTls(host),
      })
      this.#pools.set(host, pool)
    }
    return pool
  }

  /**
   * How `host` is reached: over TLS verified with upstreamTls when it says it speaks TLS (scheme
   * https, Curator sslPort), else plain. Pooled requests and upgrade tunnels both ask here.
   */
  instanceTls(host: Host): InstanceTls {
    return host.endpoint.meta.tls === true ? this.#tls : null
  }

  /** The forwarding policy's headers for `ex` (forward.ts): the same for requests and upgrades. */
  upstreamHeaders(ex: Exchange): string[] {
    return upstreamHeaders(ex, this.#underscores)
  }

  /** Starts what runs in the background (active health checks). */
  start(): void {
    this.#health?.start()
  }

  /**
   * Proxies one request; always ends in a response (or a cut connection once one started), then
   * calls `done`. The first attempt runs on callbacks, without a promise: most requests end there.
   */
  handle(ex: Exchange, done: () => void): void {
    let state: RequestState | null = null
    try {
      const headers = this.upstreamHeaders(ex)
      state = new RequestState(ex, headers, Date.now() + this.config.timeoutMs, done, this.#decideStatus, this.#attemptEnded)
      this.#budget.onRequest()
      if (this.balancer.usesHashKey) state.hashKey = this.balancer.hashKey({ headers: ex.headers, remoteAddress: ex.remoteAddress })
      if (ex.body === null) this.#attempt(state, this.#afterFirst)
      else this.#readThenAttempt(state).catch((err: unknown) => this.#crashed(state!, err))
    } catch (err) {
      this.#crashed(state ?? new RequestState(ex, [], 0, done, this.#decideStatus, this.#attemptEnded), err)
    }
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
        else sendError(ex, 502, 'ZP_ERR_INTERNAL', 'internal error', this.name, true)
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
    else {
      try {
        const read = await readBody(body, this.config.retry.bufferBytes)
        if (read.complete) state.body = read.body
        else {
          state.streamed = true
          state.prefix = read.prefix
        }
      } catch (err) {
        this.#fail(state, err)
        this.#finish(state)
        return
      }
    }
    this.#attempt(state, this.#afterFirst)
  }

  readonly #afterFirst: AttemptCallback = (state, err) => {
    if (err === null) this.#finish(state)
    else if (this.#shouldRetry(state, err)) this.#retry(state).catch((e: unknown) => this.#crashed(state, e))
    else {
      this.#fail(state, err)
      this.#finish(state)
    }
  }

  /** Attempts after the first, with p-retry's jittered exponential backoff between them. */
  async #retry(state: RequestState): Promise<void> {
    try {
      await pRetry(() => new Promise<void>((resolve, reject) => this.#attempt(state, (_s, err) => (err === null ? resolve() : reject(err)))), {
        retries: this.config.retry.attempts - 2,
        minTimeout: this.config.retry.backoffMs,
        maxTimeout: Math.max(this.config.retry.backoffMs, 1000),
        factor: 2,
        randomize: true,
        shouldRetry: ({ error }) => this.#shouldRetry(state, error),
      })
    } catch (err) {
      // An attempt that threw part-way still holds its lease: that is the guard's case.
      if (state.lease !== null) return this.#crashed(state, err)
      this.#fail(state, err)
    }
    this.#finish(state)
  }

  #finish(state: RequestState): void {
    if (state.over) return
    const ex = state.ex
    // 499 (nginx's): the client went away before its answer was complete.
    const status = ex.finished ? ex.statusCode : 499
    const ms = performance.now() - state.startedAt
    this.#metrics.request(status, ms / 1000)
    if (this.#access !== null) {
      const host = state.lastHost
      this.#access({
        service: this.name,
        method: ex.method,
        path: ex.url,
        status,
        instance: host === null ? null : `${host.host.includes(':') ? `[${host.host}]` : host.host}:${host.port}`,
        attempts: state.attempts,
        durationMs: Math.round(ms * 1000) / 1000,
        bytesOut: ex.bytesOut,
        requestId: ex.requestId,
        client: ex.remoteAddress,
      })
    }
    state.over = true
    state.done()
  }

  /** Whether to try `err`'s request again elsewhere; a yes is paid for from the retry budget. */
  #shouldRetry(state: RequestState, err: unknown): boolean {
    if (!(err instanceof UpstreamError)) return false
    if (state.retryGranted) {
      state.retryGranted = false
      return true
    }
    if (state.attempts >= this.config.retry.attempts || Date.now() >= state.deadline) return false
    if (state.tried === null || !this.balancer.hasUntried(state.tried)) return false
    const retryable = isRetryable(this.config.retry, {
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
  #attempt(state: RequestState, onSettled: AttemptCallback): void {
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
    state.lease = lease
    state.onSettled = onSettled
    state.attemptStartedAt = performance.now()
    forwardAttempt(
      this.#pool(lease.host),
      state.ex,
      {
        path: state.ex.url,
        method: state.ex.method,
        headers: state.headers,
        body: state.nextBody(),
        contentLength: state.ex.contentLength,
        headersTimeoutMs: Math.min(this.config.retry.perTryTimeoutMs, remaining),
        bodyTimeoutMs: this.config.bodyTimeoutMs,
      },
      state,
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
        const gatewayError = isGatewayStatus(status)
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
      this.#log.debug({ upstream: `${lease.host.host}:${lease.host.port}`, kind: err.kind, err: err.message }, 'attempt failed')
    } else lease.release({ ok: null })
  }

  /** Decided before a byte goes to the client: drop a gateway error and retry elsewhere? */
  readonly #decideStatus: StatusDecision = (state, head) => {
    if (!isGatewayStatus(head.status)) return false
    // An upstream asking for more time than the request has left is answered as it is.
    const after = retryAfterMs(head.header('retry-after'), Date.now())
    if (after !== null && after > state.deadline - Date.now()) return false
    state.retryGranted = this.#shouldRetry(state, new UpstreamError('status', '', false))
    return state.retryGranted
  }

  #fail(state: RequestState, err: unknown): void {
    const res = state.ex
    if (isClientGone(err)) return
    if (res.headersSent || res.destroyed) {
      // Part of the answer already went out: all we can do is cut the connection, so the client
      // sees a truncated response rather than a wrong one.
      res.destroy()
      return
    }
    const code = err instanceof ProxyError ? err.code : 'ZP_ERR_UPSTREAM_RESET'
    const status = err instanceof ProxyError && err.statusCode !== undefined ? err.statusCode : 502
    if (!(err instanceof ProxyError)) this.#log.error({ err }, 'unexpected error on the request path')
    // A message of our own errors only: an unexpected one's text may name files or internals.
    sendError(res, status, code, err instanceof ProxyError ? err.message : 'internal error', this.name)
  }

  /** Closes every pool, letting requests already queued on them finish. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.balancer.close()
    await this.#health?.close()
    await Promise.all([...this.#pools.values()].map((p) => p.close().catch(() => {})))
    this.#pools.clear()
    this.#clock.stop()
  }
}

/** upstreamTls's files as one shared context (read once, at start); none configured: the system's CAs. */
export function upstreamTlsContext(t: ServiceConfig['upstreamTls']): { readonly context: SecureContext | null; readonly servername: string | undefined } {
  if (t === undefined) return { context: null, servername: undefined }
  const context = createSecureContext({
    ca: readFileSync(t.ca),
    ...(t.cert === undefined ? {} : { cert: readFileSync(t.cert) }),
    ...(t.key === undefined ? {} : { key: readFileSync(t.key) }),
  })
  return { context, servername: t.servername }
}
