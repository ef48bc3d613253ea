// Node's own HTTP/1.1 parser (llhttp, in C++), the one its http server and client run on, used
// directly so that the proxy parses requests as strictly as Node does (request smuggling guards,
// header size limit, chunked decoding) without building an IncomingMessage and a ServerResponse
// per request, which cost more CPU than everything else on the request path together.
//
// `_http_common` is Node's internal module that exports the binding; it has been there, with
// this interface, since Node 12 and still is in Node 24. Loaded once, checked at start-up.

import { createRequire } from 'node:module'

interface ParserBinding {
  new (): NativeParser
  readonly REQUEST: number
  readonly RESPONSE: number
  readonly kOnMessageBegin: number
  readonly kOnHeaders: number
  readonly kOnHeadersComplete: number
  readonly kOnBody: number
  readonly kOnMessageComplete: number
}

interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void
  /** Bytes consumed, or an Error with `code` (HPE_*) and `bytesParsed`. */
  execute(data: Buffer): number | ParseError
  finish(): number | ParseError | undefined
  close(): void
  [k: number]: unknown
}

export interface ParseError extends Error {
  readonly code: string
  readonly bytesParsed: number
}

const require = createRequire(import.meta.url)
const common = require('_http_common') as { HTTPParser: ParserBinding; methods: readonly string[] }
const { HTTPParser, methods } = common

/** What a parser reports; `headers` is the flat [name, value, ...] list as received. */
export interface ParserEvents {
  onHead(major: number, minor: number, headers: string[], method: string, url: string, status: number, statusText: string, upgrade: boolean, keepAlive: boolean): void
  onBody(chunk: Buffer): void
  onComplete(): void
}

/** Answer from `onHead` of a response parser: read no body (the request was HEAD). */
export const SKIP_BODY = 1

/**
 * One connection's parser. llhttp hands over headers in flushes of 32 pairs when a message has
 * many (or arrives in many reads); they are gathered here so `onHead` always gets all of them.
 */
export class H1Parser {
  readonly #native: NativeParser
  #headers: string[] = []
  #url = ''
  /** Set by the owner before a response is parsed: its request was HEAD. */
  skipBody = false

  constructor(kind: 'request' | 'response', events: ParserEvents, maxHeaderSize: number) {
    const p = new HTTPParser()
    p.initialize(kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, maxHeaderSize, 0)
    p[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
      for (const h of headers) this.#headers.push(h)
      this.#url += url
    }
    p[HTTPParser.kOnHeadersComplete] = (
      major: number,
      minor: number,
      headers: string[] | undefined,
      method: number | undefined,
      url: string | undefined,
      status: number | undefined,
      statusText: string | undefined,
      upgrade: boolean,
      keepAlive: boolean,
    ): number => {
      if (headers === undefined) {
        headers = this.#headers
        this.#headers = []
      }
      if (!url) {
        url = this.#url
        this.#url = ''
      }
      events.onHead(major, minor, headers, method === undefined ? '' : methods[method]!, url, status ?? 0, statusText ?? '', upgrade, keepAlive)
      return this.skipBody ? SKIP_BODY : 0
    }
    p[HTTPParser.kOnBody] = (chunk: Buffer) => events.onBody(chunk)
    p[HTTPParser.kOnMessageComplete] = () => events.onComplete()
    this.#native = p
  }

  /** Bytes consumed, or the parse error. Callbacks run synchronously inside. */
  execute(data: Buffer): number | ParseError {
    return this.#native.execute(data)
  }

  /** The peer closed: ends a body delimited by the close, or reports a message cut short. */
  finish(): ParseError | null {
    const r = this.#native.finish()
    return r instanceof Error ? r : null
  }

  close(): void {
    this.#native.close()
  }
}
