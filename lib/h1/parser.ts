// Node's own HTTP/1.1 parser (llhttp, in C++), the one its http server and client run on, used
// directly so that the proxy parses requests as strictly as Node does (request smuggling guards,
// header size limit, chunked decoding) without building an IncomingMessage and a ServerResponse
// per request, which cost more CPU than everything else on the request path together.
//
// `_http_common` is Node's internal module that exports the binding; it has been there, with
// this interface, since Node 12 and still is in Node 24. Loaded once, checked at start-up.

import { createRequire } from 'node:module'
import type { Socket } from 'node:net'

interface ParserBinding {
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

interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void
  /** Bytes consumed, or an Error with `code` (HPE_*) and `bytesParsed`. */
  execute(data: Buffer): number | ParseError
  finish(): number | ParseError | undefined
  close(): void
  consume(handle: object): void
  unconsume(): void
  getCurrentBuffer(): Buffer
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
  /** The first byte of a message arrived (optional). */
  onBegin?(): void
  /** May answer RAW_BODY: llhttp stops after this head, the owner reads the body itself. */
  onHead(major: number, minor: number, headers: string[], method: string, url: string, status: number, statusText: string, upgrade: boolean, keepAlive: boolean): number | void
  onBody(chunk: Buffer): void
  onComplete(): void
}

/** A socket's libuv handle, as node:net keeps it (internal, but what node:http itself uses). */
interface StreamHandle {
  isStreamBase?: boolean
  reading: boolean
  readStart(): number
  readStop(): number
}

function handleOf(socket: Socket): StreamHandle | null {
  return (socket as unknown as { _handle: StreamHandle | null })._handle
}

/**
 * Stops reading from a socket whose reads go straight to a parser (`consume`): with the parser
 * reading, `socket.pause()` would stop nothing. node:http's server does the same on 'pause'.
 */
export function stopReading(socket: Socket): void {
  const h = handleOf(socket)
  if (h !== null && h.reading) {
    h.reading = false
    h.readStop()
  }
}

export function startReading(socket: Socket): void {
  const h = handleOf(socket)
  if (h !== null && !h.reading && !socket.destroyed) {
    h.reading = true
    h.readStart()
  }
}

/** Answer from `onHead` of a response parser: read no body (the request was HEAD). */
export const SKIP_BODY = 1
/**
 * Answer from `onHead`: stop right after this head, as for an Upgrade. `execute` returns the
 * head's length, the message counts as complete, and the next `execute` parses a new message:
 * the owner passes the body through itself (llhttp copies every body piece into a new Buffer).
 */
export const RAW_BODY = 2

/**
 * One connection's parser. llhttp hands over headers in flushes of 32 pairs when a message has
 * many (or arrives in many reads); they are gathered here so `onHead` always gets all of them.
 */
export class H1Parser {
  readonly #native: NativeParser
  #headers: string[] = []
  #url = ''
  #consumed = false
  /** Set by the owner before a response is parsed: its request was HEAD. */
  skipBody = false

  constructor(kind: 'request' | 'response', events: ParserEvents, maxHeaderSize: number) {
    const p = new HTTPParser()
    p.initialize(kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, maxHeaderSize, 0)
    // The binding looks each callback up by index on every message. Every slot gets a value (null
    // where there is no callback): an empty one (no onBegin) sent each message's lookup up the
    // prototype chain, 1.3% of the proxy's samples under a small-GET load.
    for (let k = 0; k <= HTTPParser.kOnExecute; k++) p[k] = null
    if (events.onBegin !== undefined) p[HTTPParser.kOnMessageBegin] = () => events.onBegin!()
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
      const r = events.onHead(major, minor, headers, method === undefined ? '' : methods[method]!, url, status ?? 0, statusText ?? '', upgrade, keepAlive)
      return this.skipBody ? SKIP_BODY : (r ?? 0)
    }
    p[HTTPParser.kOnBody] = (chunk: Buffer) => events.onBody(chunk)
    p[HTTPParser.kOnMessageComplete] = () => events.onComplete()
    this.#native = p
  }

  /**
   * Lets the parser read the socket itself, as node:http's server does: each read goes from libuv
   * straight into llhttp, without a 64 KiB Buffer, a stream push and a 'data' event per read.
   * `onExecute` gets the bytes parsed of each read, or the parse error. The socket emits no 'data'
   * from then on ('end', 'close' and writes are as before). False if the socket cannot be consumed.
   */
  consume(socket: Socket, onExecute: (ret: number | ParseError) => void): boolean {
    const h = handleOf(socket) as (StreamHandle & { _consumed?: boolean }) | null
    if (h === null || h.isStreamBase !== true || h._consumed === true) return false
    h._consumed = true
    this.#native[HTTPParser.kOnExecute] = onExecute
    this.#native.consume(h)
    this.#consumed = true
    return true
  }

  /** Gives the socket's reads back to the socket (before handing it to someone else). */
  unconsume(): void {
    if (!this.#consumed) return
    this.#consumed = false
    this.#native.unconsume()
  }

  /** The buffer of the read being parsed (consume mode): an upgrade's first bytes are in it. */
  currentBuffer(): Buffer {
    return this.#native.getCurrentBuffer()
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
