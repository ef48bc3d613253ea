// One line per error: its stable code, what a client sees, and the status it maps to.
// Callers and tests branch on `code`, never on message text.

export type ErrorCode =
  | 'ZP_ERR_CONFIG'
  | 'ZP_ERR_NO_ROUTE'
  | 'ZP_ERR_NO_ENDPOINT'
  | 'ZP_ERR_UPSTREAM_CONNECT'
  | 'ZP_ERR_UPSTREAM_RESET'
  | 'ZP_ERR_UPSTREAM_TIMEOUT'
  | 'ZP_ERR_UPSTREAM_STATUS'
  | 'ZP_ERR_CLIENT_ABORT'
  | 'ZP_ERR_SHUTTING_DOWN'
  | 'ZP_ERR_ZK_TIMEOUT'
  | 'ZP_ERR_CLOSED'
  | 'ZP_ERR_CLIENT_TIMEOUT'
  | 'ZP_ERR_BODY_TOO_LARGE'
  | 'ZP_ERR_BAD_REQUEST'
  | 'ZP_ERR_UPGRADE_UNSUPPORTED'
  /** A gRPC call passed the deadline its grpc-timeout set (answered DEADLINE_EXCEEDED). */
  | 'ZP_ERR_GRPC_DEADLINE'

const STATUS: Partial<Record<ErrorCode, number>> = {
  ZP_ERR_NO_ROUTE: 404,
  ZP_ERR_NO_ENDPOINT: 503,
  ZP_ERR_UPSTREAM_CONNECT: 502,
  ZP_ERR_UPSTREAM_RESET: 502,
  ZP_ERR_UPSTREAM_TIMEOUT: 504,
  ZP_ERR_SHUTTING_DOWN: 503,
  ZP_ERR_GRPC_DEADLINE: 504,
}

export class ProxyError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number | undefined

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; statusCode?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'ProxyError'
    this.code = code
    this.statusCode = options?.statusCode ?? STATUS[code]
  }
}

/** The client went away before its answer was complete: nothing to answer, nothing to retry. */
export function clientGone(message: string): ProxyError {
  return new ProxyError('ZP_ERR_CLIENT_ABORT', message)
}

export function isClientGone(err: unknown): boolean {
  return err instanceof ProxyError && err.code === 'ZP_ERR_CLIENT_ABORT'
}

/** A bad config file: `problems` holds one `field.path: message` line each. */
export class ConfigError extends ProxyError {
  readonly problems: readonly string[]

  constructor(problems: readonly string[]) {
    super('ZP_ERR_CONFIG', `invalid config:\n${problems.join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/** How an attempt at one upstream failed; decides both the retry and the status a client sees. */
export type FailureKind = 'connect' | 'reset' | 'timeout' | 'status'

const FAILURE_CODE: Record<FailureKind, ErrorCode> = {
  connect: 'ZP_ERR_UPSTREAM_CONNECT',
  reset: 'ZP_ERR_UPSTREAM_RESET',
  timeout: 'ZP_ERR_UPSTREAM_TIMEOUT',
  status: 'ZP_ERR_UPSTREAM_STATUS',
}

export class UpstreamError extends ProxyError {
  readonly kind: FailureKind
  /** True once any byte of the response went to the client: nothing can be retried or rewritten. */
  readonly responseStarted: boolean

  constructor(kind: FailureKind, message: string, responseStarted: boolean, cause?: unknown) {
    super(FAILURE_CODE[kind], message, { cause })
    this.name = 'UpstreamError'
    this.kind = kind
    this.responseStarted = responseStarted
  }
}

// Socket error codes that mean the request never reached the upstream, so it is safe to send
// elsewhere whatever its method.
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
])
const TIMEOUT_CODES = new Set(['ETIMEDOUT'])

/** Maps an upstream socket's error to a failure kind. */
export function classifyTransportError(err: unknown): FailureKind {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string') {
    if (CONNECT_CODES.has(code)) return 'connect'
    if (TIMEOUT_CODES.has(code)) return 'timeout'
  }
  return 'reset'
}
