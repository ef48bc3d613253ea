// What one request carries through its attempts (service.ts), and what an attempt reports to.

import type { Buffer } from 'node:buffer'
import { performance } from 'node:perf_hooks'
import type { Host, Lease } from '../balancing/balancer.js'
import type { ClientExchange } from './client-side.js'
import { BodyTap } from './forward.js'
import type { AttemptListener } from './forward.js'
import type { ResponseHead } from './h1/headers.js'
import type { GrpcCall } from './grpc/call.js'
import type { HeldBody } from './h1/upstream.js'

export type StatusDecision = (state: RequestState, head: ResponseHead) => boolean
/** How an attempt ended: `err` null once the whole answer went to the client. */
export type AttemptCallback = (state: RequestState, err: Error | null) => void
export type AttemptEnd = (state: RequestState, err: Error | null, status: number, latencyMs: number) => void

const NO_CHUNKS: readonly Buffer[] = []

/**
 * What one request carries through its attempts. It is also what an attempt reports to (the
 * AttemptListener), so the request path makes no closure per request: the service's decisions
 * are shared functions that get the state passed in.
 */
export class RequestState implements AttemptListener {
  readonly ex: ClientExchange
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
  /** Retries granted so far (at most retry.attempts - 1). */
  retries = 0
  /** The instance of the latest attempt (the access log's). */
  lastHost: Host | null = null
  lastError: Error | null = null
  /** A retry was already granted (and paid for from the budget) for the failure in flight. */
  retryGranted = false
  /** > 0: a streamed body is kept up to this many bytes for a retry (a gRPC call's, which streams at once). */
  recordBytes = 0
  /** The gRPC call this request is (grpc/call.ts), or null. */
  grpc: GrpcCall | null = null
  /** `done` was called: the request is over for the server (set once, by Service.#finish). */
  over = false

  constructor(ex: ClientExchange, headers: string[], deadline: number, done: () => void, decide: StatusDecision, ended: AttemptEnd) {
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
    return !this.streamed || this.tap === null || !this.tap.started || this.tap.replay !== null
  }

  nextBody(): HeldBody | BodyTap | null {
    if (!this.streamed) return this.body
    const last = this.tap
    if (last !== null) {
      // A kept body (gRPC) is replayed from what the last attempt took; it must stop taking.
      if (last.replay !== null) this.prefix = last.replay
      last.destroy()
    }
    this.tap = new BodyTap(this.ex.body!, this.prefix, this.recordBytes)
    return this.tap
  }
}
