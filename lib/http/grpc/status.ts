// gRPC's own terms, as pure functions (issue 27): which requests are gRPC calls, the status codes,
// the published HTTP-to-gRPC status table (grpc/grpc doc/http-grpc-status-mapping.md, as grpc-js
// applies it), the codes the proxy gives its own failures, `grpc-timeout` (PROTOCOL-HTTP2.md:
// at most 8 digits and a unit) and `grpc-message` percent-encoding. No I/O.

import { Buffer } from 'node:buffer'

/** gRPC status codes (grpc/grpc doc/statuscodes.md). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const

/**
 * What kind of gRPC call a request is, from its content-type: `grpc` (HTTP/2 gRPC), `grpc-web`
 * (binary frames over any HTTP), `grpc-web-text` (the same frames in base64); null: not gRPC.
 */
export type GrpcKind = 'grpc' | 'grpc-web' | 'grpc-web-text'

/** The longest content-type looked at: longer ones are not gRPC (no media type of gRPC's comes near). */
const MAX_CONTENT_TYPE = 256

/**
 * The kind of call `contentType` names: `application/grpc` alone or with `+proto` / `+json` (any
 * other `+suffix` too: the gRPC spec leaves the message format open), `application/grpc-web` and
 * `application/grpc-web+proto`, `application/grpc-web-text` and `+proto`; parameters after `;` are
 * allowed, case does not matter (RFC 9110 §8.3.1). Anything else is not gRPC.
 */
export function grpcKind(contentType: string | undefined): GrpcKind | null {
  if (contentType === undefined || contentType.length > MAX_CONTENT_TYPE) return null
  const semi = contentType.indexOf(';')
  const type = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
  if (!type.startsWith('application/grpc')) return null
  const rest = type.slice('application/grpc'.length)
  if (rest === '' || isSuffix(rest)) return 'grpc'
  if (rest === '-web' || rest === '-web+proto') return 'grpc-web'
  if (rest === '-web-text' || rest === '-web-text+proto') return 'grpc-web-text'
  return null
}

/** `+name`: a message format (proto, json, or a custom codec's), a token of letters, digits, `-`, `.`, `_`. */
function isSuffix(s: string): boolean {
  return /^\+[a-z0-9][a-z0-9._-]{0,63}$/.test(s)
}

/**
 * The message format a gRPC-Web content-type carries (`+proto` when none is written) as the
 * content-type an instance speaking gRPC over HTTP/2 takes.
 */
export function grpcContentTypeFor(webContentType: string | undefined): string {
  const type = (webContentType ?? '').split(';')[0]!.trim().toLowerCase()
  return type.endsWith('+proto') || type === 'application/grpc-web' || type === 'application/grpc-web-text' ? 'application/grpc+proto' : 'application/grpc'
}

/**
 * The gRPC status a client gets for an instance's HTTP status when the answer carries no
 * `grpc-status` (doc/http-grpc-status-mapping.md; grpc-js's mapHttpStatusCode).
 */
export function grpcStatusFromHttp(status: number): number {
  switch (status) {
    case 400:
      return GrpcStatus.INTERNAL
    case 401:
      return GrpcStatus.UNAUTHENTICATED
    case 403:
      return GrpcStatus.PERMISSION_DENIED
    case 404:
      return GrpcStatus.UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE
    default:
      return GrpcStatus.UNKNOWN
  }
}

/**
 * The gRPC status of a failure the proxy answers itself, by its stable error code (issue 27):
 * no instance, connect failure, reset and shutting down are UNAVAILABLE (another try may work), a
 * deadline is DEADLINE_EXCEEDED, a body over the limit RESOURCE_EXHAUSTED, no route UNIMPLEMENTED.
 * Codes not listed fall back to the HTTP status the proxy would have sent, through the table.
 */
export function grpcStatusForProxyError(code: string, httpStatus: number): number {
  switch (code) {
    case 'ZP_ERR_NO_ENDPOINT':
    case 'ZP_ERR_UPSTREAM_CONNECT':
    case 'ZP_ERR_UPSTREAM_RESET':
    case 'ZP_ERR_SHUTTING_DOWN':
      return GrpcStatus.UNAVAILABLE
    case 'ZP_ERR_UPSTREAM_TIMEOUT':
    case 'ZP_ERR_GRPC_DEADLINE':
      return GrpcStatus.DEADLINE_EXCEEDED
    case 'ZP_ERR_BODY_TOO_LARGE':
      return GrpcStatus.RESOURCE_EXHAUSTED
    case 'ZP_ERR_NO_ROUTE':
      return GrpcStatus.UNIMPLEMENTED
    default:
      if (httpStatus === 408) return GrpcStatus.DEADLINE_EXCEEDED
      if (httpStatus === 413) return GrpcStatus.RESOURCE_EXHAUSTED
      return grpcStatusFromHttp(httpStatus)
  }
}

/**
 * A `grpc-status` value as a code 0-16, or null. Only 1 to 2 digits are read (a value of any
 * length is bounded before Number sees it); a code past 16 is not a code, and gRPC clients treat
 * it as UNKNOWN, which the caller does too by getting null.
 */
export function parseGrpcStatus(value: string | undefined): number | null {
  if (value === undefined || !/^[0-9]{1,2}$/.test(value)) return null
  const n = Number(value)
  return n <= 16 ? n : null
}

/** ms per unit of `grpc-timeout` (PROTOCOL-HTTP2.md: Hours, Minutes, Seconds, milli, micro, nano). */
const TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 }

/**
 * A `grpc-timeout` value in ms (fractions kept, never negative), or null when it is not one:
 * 1 to 8 ASCII digits and one unit letter, nothing else (no sign, no space, no second unit). The
 * largest, 99999999H, is about 11,400 years: finite, and capped by the service's timeoutMs anyway.
 */
export function parseGrpcTimeout(value: string | undefined): number | null {
  if (value === undefined) return null
  const m = /^([0-9]{1,8})([HMSmun])$/.exec(value)
  if (m === null) return null
  return Number(m[1]) * TIMEOUT_UNIT_MS[m[2]!]!
}

/**
 * `ms` as a `grpc-timeout` value: the finest unit that fits in 8 digits, rounded up so the
 * instance never gets more time than is left (grpc-js's getDeadlineTimeoutString does the same).
 * Input is bounded first: at least 1n (NaN and negatives too), at most 99999999H.
 */
export function formatGrpcTimeout(ms: number): string {
  const bounded = Number.isNaN(ms) ? 0 : Math.min(Math.max(0, ms), 99_999_999 * 3_600_000)
  for (const unit of ['n', 'u', 'm', 'S', 'M', 'H'] as const) {
    const amount = Math.ceil(bounded / TIMEOUT_UNIT_MS[unit]! - 1e-9)
    if (amount < 100_000_000) return `${Math.max(1, amount)}${unit}`
  }
  return '99999999H'
}

/** The longest `grpc-message` the proxy writes, in characters before encoding. */
const MAX_MESSAGE = 1024

/**
 * A message as `grpc-message` carries it (PROTOCOL-HTTP2.md): UTF-8, each byte outside
 * 0x20-0x7E and `%` itself written as %XX. Cut at MAX_MESSAGE characters first.
 */
export function encodeGrpcMessage(message: string): string {
  const bytes = Buffer.from(message.length > MAX_MESSAGE ? message.slice(0, MAX_MESSAGE) : message, 'utf8')
  let out = ''
  for (const b of bytes) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`
  return out
}

/**
 * A `grpc-message` as text: %XX decoded as UTF-8 bytes; a `%` not followed by two hex digits is
 * kept as it is (the spec asks receivers not to fail on bad encoding).
 */
export function decodeGrpcMessage(value: string): string {
  const bytes: number[] = []
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c === 0x25 && /^[0-9a-fA-F]{2}$/.test(value.slice(i + 1, i + 3))) {
      bytes.push(parseInt(value.slice(i + 1, i + 3), 16))
      i += 2
    } else if (c < 0x80) bytes.push(c)
    else for (const b of Buffer.from(value[i]!, 'utf8')) bytes.push(b)
  }
  return Buffer.from(bytes).toString('utf8')
}
