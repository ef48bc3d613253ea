// What a fuzz run is asked for and what it answers, and the bounds every section shares.

import { Buffer } from 'node:buffer'
import { KEEP_ALIVE_TIMEOUT_MS } from '../../lib/http/h1/front.js'
import { MAX_HEADER_BYTES } from '../../lib/http/h1/headers.js'
import { DEFAULT_LIMITS } from '../../lib/limits.js'

/** No connection lives longer: a case the proxy leaves hanging is cut and counted as `timeout`. */
export const BOUND_MS = 8_000
/**
 * The proxy's deadline for an answer's head (the service's timeoutMs), under BOUND_MS so a 504
 * reaches the client first. Nothing the upstreams do waits this long on purpose: it is a margin
 * for a busy machine, not a case.
 */
export const ANSWER_DEADLINE_MS = 5_000
/** The body of a `large` answer: several reads and writes, and backpressure on slow readers. */
export const LARGE = 200 * 1024
/** The proxy's limits on a request head, read from lib/ so a change there moves the cases with it. */
export const HEAD_LIMIT = MAX_HEADER_BYTES
export const HEADER_COUNT_LIMIT = DEFAULT_LIMITS.maxHeaders
/** How long the proxy keeps an idle client connection (its sweep then closes it within a second). */
export const CLIENT_IDLE_MS = KEEP_ALIVE_TIMEOUT_MS
/** Beyond the idle timeouts, how long the run waits for the last sockets to close (a busy machine is slow). */
export const IDLE_MARGIN_MS = 10_000
export const EMPTY: Buffer = Buffer.alloc(0)

export interface FuzzOptions {
  readonly requests: number
  readonly seed: number
  readonly concurrency?: number
  readonly log?: (line: string) => void
  /** Only these cases (`w3#127`), for a replay. */
  readonly cases?: readonly string[]
  /** Only cases of these families (the others are skipped, their draws kept, so tags stay the same). */
  readonly families?: readonly string[]
}

export interface FamilyStats {
  cases: number
  requests: number
  /** Time spent in this family's cases, summed over workers. */
  ms: number
  /** Cases that took a second or more (waiting out a hang, mostly). */
  slow: number
  /** What the requests of this family got: a status, or `closed`, `truncated`, `timeout`... */
  readonly outcomes: Record<string, number>
}

export interface FuzzResult {
  readonly seed: number
  readonly requests: number
  readonly seconds: number
  readonly perSecond: number
  /** The proxy child exited during the run. */
  readonly crash: { readonly code: number | null; readonly signal: string | null; readonly output: string; readonly lastCases: readonly string[] } | null
  /** Answers (or tunnel bytes) carrying another request's id, or an unasked-for answer's bytes. */
  readonly crossed: number
  /**
   * Of `crossed`, those carrying the id of another request on the same connection: pipelined
   * answers out of order, or a request forwarded as (or answered for) an earlier one.
   */
  readonly crossedSameConnection: number
  /** Own answers whose body is not what the upstream sent for that request. */
  readonly corrupt: number
  /** Examples of the three above. */
  readonly leaks: readonly string[]
  /** The status of a plain GET after the run (null: none came). */
  readonly finalStatus: number | null
  readonly families: Readonly<Record<string, FamilyStats>>
  /** Outcomes a request should not have had (wrong status, hang...), with one example each. */
  readonly unexpected: readonly { readonly what: string; readonly count: number; readonly example: string }[]
  readonly upstream: {
    readonly requests: number
    readonly upgrades: number
    /** Requests the upstreams could not parse: the proxy sent something malformed. */
    readonly malformed: Readonly<Record<string, number>>
    /** Requests cut off by the proxy (its client left mid-body): expected, counted apart. */
    readonly cut: number
    /** Requests smuggled inside another request's body that reached an upstream as requests. */
    readonly nested: number
    readonly openConnections: number
  }
  /** The child at the end: memory, and sockets still open (a leak shows here). */
  readonly proxy: { readonly rssMB: number; readonly sockets: number } | null
  readonly connectErrors: Readonly<Record<string, number>>
  /** A class counted apart, not a failure: the proxy's 4xx JSON body after refusing a malformed HEAD head. */
  readonly headRefusalBodies: number
  /** The harness's own exceptions (a bug in it): each fails the run. */
  readonly harnessErrors: readonly string[]
  /** Why the run fails, one line per reason; empty: it passes. */
  readonly failures: readonly string[]
  readonly ok: boolean
}
