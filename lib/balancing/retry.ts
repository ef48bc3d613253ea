// When to try a request again, as a pure function of what happened (nginx's idempotency rule,
// Envoy's retry_on names). Where the retry goes is not decided here: the balancer excludes every
// instance the request already tried (Envoy's previous-hosts predicate).

import type { FailureKind } from '../errors.js'
import { IDEMPOTENT } from '../methods.js'

/** The retry conditions a service may list (Envoy's retry_on names); the config schema takes them from here. */
export const RETRY_CONDITIONS = ['connect-failure', 'reset', 'timeout', 'gateway-error'] as const
export type RetryCondition = (typeof RETRY_CONDITIONS)[number]

/** 502, 503 and 504: the statuses retried under `gateway-error` (Envoy's name), checked per answer. */
export function isGatewayStatus(status: number): boolean {
  return status >= 502 && status <= 504
}

export interface RetryPolicy {
  readonly on: readonly RetryCondition[]
  readonly nonIdempotent: boolean
}

export interface AttemptFailure {
  readonly method: string
  readonly kind: FailureKind
  /** The request carries an Idempotency-Key header. */
  readonly idempotencyKey: boolean
  /** The body can be sent again (none, buffered, or never read). */
  readonly replayable: boolean
  /** A byte of the response already went to the client. */
  readonly responseStarted: boolean
}

const CONDITION: Record<FailureKind, RetryCondition> = {
  connect: 'connect-failure',
  reset: 'reset',
  timeout: 'timeout',
  status: 'gateway-error',
}

/** May this failure be sent to another instance? (Budget and instances left are checked apart.) */
export function isRetryable(policy: RetryPolicy, f: AttemptFailure): boolean {
  if (f.responseStarted || !f.replayable) return false
  if (!policy.on.includes(CONDITION[f.kind])) return false
  // Nothing reached an upstream: safe whatever the method.
  if (f.kind === 'connect') return true
  return IDEMPOTENT.has(f.method) || f.idempotencyKey || policy.nonIdempotent
}

/** A Retry-After header (delta-seconds or an HTTP date) in ms from `now`; null when absent or bad. */
export function retryAfterMs(value: string | string[] | undefined, now: number): number | null {
  const v = Array.isArray(value) ? value[0] : value
  if (v === undefined || v.trim() === '') return null
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000
  const at = Date.parse(v)
  return Number.isNaN(at) ? null : Math.max(0, at - now)
}
