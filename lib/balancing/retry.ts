// When to try a request again, as a pure function of what happened (nginx's idempotency rule,
// Envoy's retry_on names). Where the retry goes is not decided here: the balancer excludes every
// instance the request already tried (Envoy's previous-hosts predicate).

import type { FailureKind } from '../errors.js'
import { IDEMPOTENT } from '../methods.js'

/**
 * The retry conditions a service may list (Envoy's retry_on names, its retriable-status-codes
 * for gRPC as `grpc-<status>`); the config schema takes them from here.
 */
export const RETRY_CONDITIONS = ['connect-failure', 'reset', 'timeout', 'gateway-error', 'grpc-unavailable', 'grpc-resource-exhausted', 'grpc-cancelled', 'grpc-deadline-exceeded'] as const
export type RetryCondition = (typeof RETRY_CONDITIONS)[number]

/** `retry.on` when a service does not say: every HTTP condition, and of gRPC's only UNAVAILABLE (issue 27). */
export const DEFAULT_RETRY_ON: readonly RetryCondition[] = ['connect-failure', 'reset', 'timeout', 'gateway-error', 'grpc-unavailable']

/** The gRPC statuses a condition names (1 CANCELLED, 4 DEADLINE_EXCEEDED, 8 RESOURCE_EXHAUSTED, 14 UNAVAILABLE). */
const GRPC_CONDITION: Readonly<Record<number, RetryCondition>> = {
  1: 'grpc-cancelled',
  4: 'grpc-deadline-exceeded',
  8: 'grpc-resource-exhausted',
  14: 'grpc-unavailable',
}

/**
 * May a gRPC call that ended with `grpcStatus` before any of its answer reached the client be sent
 * to another instance? Only when `retry.on` names that status. Whatever the method (a gRPC call is
 * always POST): the instance answered with a status and no message, which is gRPC's own rule for a
 * call that may be retried (gRFC A6, "committed" once a message or headers went to the client).
 */
export function isGrpcRetryable(policy: RetryPolicy, grpcStatus: number): boolean {
  const condition = GRPC_CONDITION[grpcStatus]
  return condition !== undefined && policy.on.includes(condition)
}

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
