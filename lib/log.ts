// Structured logs, one JSON object a line (pino: fast, well kept, the Node standard for this).
import process from 'node:process'
import { destination, pino } from 'pino'

/** The slice of pino the proxy uses, so tests and embedders can pass their own. */
export interface Logger {
  debug(obj: object, msg: string): void
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
  child(bindings: Record<string, unknown>): Logger
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'

export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({ level, base: { name: 'zoo-proxy' }, timestamp: pino.stdTimeFunctions.isoTime })
}

export const silentLogger: Logger = pino({ level: 'silent' })

/** One line of the access log (`log.access: true`): what a request was and how it ended. */
export interface AccessEntry {
  readonly service: string | null
  readonly method: string
  readonly path: string
  readonly status: number
  /** host:port of the instance of the last attempt; null when none was tried. */
  readonly instance: string | null
  readonly attempts: number
  readonly durationMs: number
  /** Body bytes written to the client. */
  readonly bytesOut: number
  readonly requestId: string
  readonly client: string
  /** How the client spoke: `http/1.1`, `h2` (TLS) or `h2c`. */
  readonly protocol: 'http/1.1' | 'h2' | 'h2c'
  /** A gRPC call's status (0-16), as its client got it (docs/grpc.md); absent for other requests. */
  readonly grpcStatus?: number
}

export type AccessLog = (entry: AccessEntry) => void

/** Longest an access line waits in the buffer: `tail -f` shows a request within this at any rate. */
const ACCESS_FLUSH_MS = 1000

/**
 * Writes each entry as one JSON line on stdout (pino: `time` first, `msg: "access"`). Lines are
 * gathered into writes of 4 KiB or more (sonic-boom, pino's own destination), not one system call
 * a request, and flushed at least every ACCESS_FLUSH_MS (nginx's access_log `flush=` idea), so a
 * quiet proxy does not sit on them; what is left is flushed when the process exits (the CLI exits
 * after SIGTERM and SIGINT; a reload keeps the same log).
 */
export function createAccessLog(): AccessLog {
  const dest = destination({ dest: 1, minLength: 4096, sync: false })
  process.once('exit', () => dest.flushSync())
  let pending = false
  setInterval(() => {
    if (!pending) return
    pending = false
    dest.flush()
  }, ACCESS_FLUSH_MS).unref()
  const out = pino({ level: 'info', base: null, timestamp: pino.stdTimeFunctions.isoTime }, dest)
  return (entry) => {
    pending = true
    out.info(entry, 'access')
  }
}
