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
