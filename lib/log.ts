// Structured logs, one JSON object a line (pino: fast, well kept, the Node standard for this).
import { pino } from 'pino'

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
}

export type AccessLog = (entry: AccessEntry) => void

/** Writes each entry as one JSON line on stdout (pino: `time` first, `msg: "access"`). */
export function createAccessLog(): AccessLog {
  const out = pino({ level: 'info', base: null, timestamp: pino.stdTimeFunctions.isoTime })
  return (entry) => out.info(entry, 'access')
}
