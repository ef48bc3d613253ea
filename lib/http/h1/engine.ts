// Which HTTP/1.1 parser the proxy runs on (issue 15). The fast path is Node's own llhttp binding,
// from the internal module `_http_common`, reading sockets through their handles (`consume`,
// `readStart`/`readStop`) as node:http's server does. Internal means it can move: Node has
// runtime-deprecated other underscore modules, and a proposal would do the same to `_http_*`.
// So the binding is checked once, at start-up, for the shape parser.ts relies on, and run once on
// a request; if anything is missing or answers otherwise, or ZOO_PROXY_PARSER=portable, the proxy
// runs on the portable path instead: the strict JavaScript parser in ./portable.ts, sockets read
// through the public stream API ('data', pause/resume). The CLI logs one warn line naming it.

import { Buffer } from 'node:buffer'
import { createRequire } from 'node:module'
import process from 'node:process'
import { PortableParser } from './portable.js'

/** What parser.ts uses of a parser class: llhttp's binding, or the portable parser. */
export interface ParserBinding {
  new (): NativeParser
  readonly REQUEST: number
  readonly RESPONSE: number
  readonly kOnMessageBegin: number
  readonly kOnHeaders: number
  readonly kOnHeadersComplete: number
  readonly kOnBody: number
  readonly kOnMessageComplete: number
  readonly kOnExecute: number
}

export interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void
  /** Bytes consumed, or an Error with `code` (HPE_*) and `bytesParsed`. */
  execute(data: Buffer): number | (Error & { code: string; bytesParsed: number })
  finish(): number | (Error & { code: string; bytesParsed: number }) | undefined
  close(): void
  consume(handle: object): void
  unconsume(): void
  getCurrentBuffer(): Buffer
  [k: number]: unknown
}

export interface ParserEngine {
  readonly name: 'native' | 'portable'
  /** Why the portable path was taken; '' on the native one. */
  readonly reason: string
  readonly Parser: ParserBinding
  /** Method names by the index the parser reports. */
  readonly methods: readonly string[]
  /** The parser may read a socket's handle itself (`consume`). */
  readonly consumes: boolean
}

/** The values ZOO_PROXY_PARSER takes; unset is 'native' where the binding is usable. */
export const PARSER_SETTINGS = ['native', 'portable'] as const

const SLOTS = ['REQUEST', 'RESPONSE', 'kOnMessageBegin', 'kOnHeaders', 'kOnHeadersComplete', 'kOnBody', 'kOnMessageComplete', 'kOnExecute'] as const
const METHODS_USED = ['initialize', 'execute', 'finish', 'close', 'consume', 'unconsume', 'getCurrentBuffer'] as const

function portable(reason: string): ParserEngine {
  return { name: 'portable', reason, Parser: PortableParser as unknown as ParserBinding, methods: PortableParser.methods, consumes: false }
}

/** What `require('_http_common')` gives, or why nothing usable. */
export function loadNative(): unknown {
  return createRequire(import.meta.url)('_http_common')
}

/** Why the binding cannot be used as parser.ts uses it, or null when it can. */
export function nativeProblem(common: unknown): string | null {
  const c = common as { HTTPParser?: unknown; methods?: unknown } | null
  const P = c?.HTTPParser as (ParserBinding & Record<string, unknown>) | undefined
  if (typeof P !== 'function') return '_http_common.HTTPParser is missing'
  for (const k of SLOTS) if (typeof P[k] !== 'number') return `_http_common.HTTPParser.${k} is missing`
  const proto = P.prototype as unknown as Record<string, unknown>
  for (const m of METHODS_USED) if (typeof proto[m] !== 'function') return `_http_common.HTTPParser#${m} is missing`
  const methods = c!.methods
  if (!Array.isArray(methods) || !methods.every((m) => typeof m === 'string')) return '_http_common.methods is missing'
  // One request through it, read back the way parser.ts reads it.
  let seen = ''
  try {
    const p = new P()
    p.initialize(P.REQUEST, {}, 16 * 1024, 0)
    for (let k = 0; k <= P.kOnExecute; k++) p[k] = null
    p[P.kOnHeadersComplete] = (major: number, minor: number, headers: unknown, method: number, url: string): number => {
      seen = `${methods[method]} ${url} ${major}.${minor} ${JSON.stringify(headers)}`
      return 0
    }
    const head = Buffer.from('GET /probe HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1')
    const n = p.execute(head)
    p.close()
    if (n !== head.length) return '_http_common.HTTPParser did not parse a request'
  } catch (err) {
    return `_http_common.HTTPParser failed (${(err as Error).message})`
  }
  if (seen !== 'GET /probe 1.1 ["Host","a"]') return '_http_common.HTTPParser reports a request in another shape'
  return null
}

/** The engine for a ZOO_PROXY_PARSER setting; `load` stands for `require('_http_common')`. */
export function chooseEngine(setting: string | undefined, load: () => unknown = loadNative): ParserEngine {
  if (setting === 'portable') return portable('ZOO_PROXY_PARSER=portable')
  let common: unknown
  try {
    common = load()
  } catch (err) {
    return portable(`_http_common cannot be loaded (${(err as Error).message})`)
  }
  const problem = nativeProblem(common)
  if (problem !== null) return portable(problem)
  const { HTTPParser, methods } = common as { HTTPParser: ParserBinding; methods: readonly string[] }
  return { name: 'native', reason: '', Parser: HTTPParser, methods, consumes: true }
}

/** The process's engine, chosen once when the module loads. */
export const ENGINE: ParserEngine = chooseEngine(process.env.ZOO_PROXY_PARSER)
