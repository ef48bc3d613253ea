// Finagle's retry budget (com.twitter.finagle.service.RetryBudget): retries may add at most
// `percent` % to the requests of the last `windowMs`, plus a reserve of `minRetriesPerSecond` for
// every second of the window, so a quiet service can still retry while a sick fleet is not hit by a
// storm of retries. Counted in one-second buckets; cheap enough to ask on every failure.

export interface RetryBudgetOptions {
  /** Retries as a share of requests, in percent. */
  readonly percent: number
  readonly minRetriesPerSecond: number
  readonly windowMs: number
}

export class RetryBudget {
  readonly #opts: RetryBudgetOptions
  readonly #clock: () => number
  readonly #requests: Float64Array
  readonly #retries: Float64Array
  readonly #stamps: Float64Array

  constructor(opts: RetryBudgetOptions, clock: () => number = Date.now) {
    this.#opts = opts
    this.#clock = clock
    const n = Math.max(1, Math.ceil(opts.windowMs / 1000))
    this.#requests = new Float64Array(n)
    this.#retries = new Float64Array(n)
    this.#stamps = new Float64Array(n).fill(-1)
  }

  #bucket(): number {
    const second = Math.floor(this.#clock() / 1000)
    const i = second % this.#stamps.length
    if (this.#stamps[i] !== second) {
      this.#stamps[i] = second
      this.#requests[i] = 0
      this.#retries[i] = 0
    }
    return i
  }

  /** Counts one request (its first attempt). */
  onRequest(): void {
    this.#requests[this.#bucket()]!++
  }

  /** True, and the retry is counted, when the budget allows one more retry now. */
  tryRetry(): boolean {
    const current = this.#bucket()
    const oldest = Math.floor(this.#clock() / 1000) - this.#stamps.length + 1
    let requests = 0
    let retries = 0
    for (let i = 0; i < this.#stamps.length; i++) {
      if (this.#stamps[i]! < oldest) continue
      requests += this.#requests[i]!
      retries += this.#retries[i]!
    }
    const allowed = (requests * this.#opts.percent) / 100 + this.#opts.minRetriesPerSecond * this.#stamps.length
    if (retries + 1 > allowed) return false
    this.#retries[current]!++
    return true
  }
}
