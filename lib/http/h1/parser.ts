// Node's own HTTP/1.1 parser (llhttp, in C++), the one its http server and client run on, used
// directly so that the proxy parses requests as strictly as Node does (request smuggling guards,
// header size limit, chunked decoding) without building an IncomingMessage and a ServerResponse
// per request, which cost more CPU than everything else on the request path together.
//
// `_http_common` is Node's internal module that exports the binding; it has been there, with
// this interface, since Node 12 and still is in Node 26. Loaded once and checked at start-up by
// ./engine.ts; where it is missing or of another shape (or ZOO_PROXY_PARSER=portable), the same
// class drives the portable parser (./portable.ts) instead, which has the same interface and never
// consumes a socket. The rules below are the binding's; the portable parser is held to them too.
//
// THE RULES OF THE BINDING. It is C++ behind a JS object, and it trusts its caller the way
// node:http's `_http_server.js` / `_http_client.js` / `_http_common.js` use it. Breaking a rule
// does not throw: it corrupts memory (the SIGSEGV / `malloc(): invalid next size` of issue 17).
// Every rule below is enforced by this class, not left to its callers.
//
//  1. Never free a parser from inside its own call stack. `close()` deletes the C++ object at
//     once, but `execute()` and a consumed socket's read (`OnStreamRead`) still touch it after the
//     JS callbacks return (`current_buffer_len_ = 0` after kOnExecute, `Save()` after llhttp).
//     Nor from a nextTick or microtask queued there: Node drains those inside the callback scope
//     of a read, before the C++ frame returns. node:http closes a parser from `setImmediate`
//     (`closeParserInstance`); `H1Parser.close()` does the same, and only once.
//  2. Once closed (or closing), nothing calls into it: `execute`, `finish`, `consume`,
//     `unconsume`, `getCurrentBuffer` are refused here, and callbacks still firing within the
//     parse that was running are dropped (the owner said it is done with the connection).
//  3. No re-entry: `execute` is never called from one of its own callbacks (the binding CHECKs
//     this and aborts). Owners parse from a socket read, never from a parser callback.
//  4. A consumed socket is unconsumed before anything else reads it (an upgrade handed on) and
//     before the parser is freed; a socket handle is consumed by at most one parser in its life.
//  5. `getCurrentBuffer()` only inside kOnExecute (it is the read being parsed; outside, there is
//     none). It copies.
//  6. After a pause for an upgrade (our RAW_BODY), llhttp keeps its `upgrade` flag and the
//     binding then reports no parse error at all (`if (!parser_.upgrade && err != HPE_OK)`): a
//     parser is re-initialized before it parses another message after one (`reinitialize`).
//  7. Nothing throws into the binding: an exception inside a callback leaves llhttp mid-message
//     (got_exception_), and in a consumed read it is an uncaught exception that ends the process.
//     Each callback is wrapped here; a throw ends the parse as an error of code ZP_CALLBACK_THREW,
//     which the owner handles like a malformed message (close the connection).
//  8. What the binding hands over in pieces (flushed headers, a chunked message's trailers, the
//     URL) belongs to one message: gathered pieces are cleared at its head and at its end, so
//     nothing of one message (a trailer, its URL) ever lands in the next one's head.
//
// One rule the binding does not keep and this class adds, for both engines: a trailer section
// that names a framing or connection field ends the parse as an error (./framing.ts says why);
// the portable parser refuses it itself, llhttp would apply some of them.

import type { Socket } from 'node:net'
import { setImmediate } from 'node:timers'
import { ENGINE } from './engine.js'
import type { NativeParser, ParserEngine } from './engine.js'
import { trailerProblem } from './framing.js'

export interface ParseError extends Error {
  readonly code: string
  readonly bytesParsed: number
}

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
  _consumed?: boolean
}

/** The handle of a socket a parser reads itself (consume), else null. */
function consumedHandle(socket: Socket): StreamHandle | null {
  if (!ENGINE.consumes) return null
  const h = (socket as unknown as { _handle: StreamHandle | null })._handle
  return h !== null && h !== undefined && h._consumed === true ? h : null
}

/**
 * Why a connected plain TCP socket cannot be consumed as node:http's server consumes one (its
 * handle missing, not a stream base, without readStart/readStop, or consumed already), or null.
 * Such a socket is read through its stream instead: the public, portable way.
 */
export function handleProblem(socket: Socket): string | null {
  const h = (socket as unknown as { _handle?: StreamHandle | null })._handle
  if (h === null || h === undefined) return 'the socket has no handle'
  if (h._consumed === true) return 'the socket handle is consumed already'
  if (h.isStreamBase !== true) return 'the socket handle is not a stream base'
  if (typeof h.readStart !== 'function' || typeof h.readStop !== 'function') return 'the socket handle has no readStart/readStop'
  return null
}

/**
 * Stops reading from a socket. One whose reads go straight to a parser (`consume`) is stopped at
 * its handle, as node:http's server does on 'pause' (`socket.pause()` would stop nothing there);
 * any other through the public stream API.
 */
export function stopReading(socket: Socket): void {
  const h = consumedHandle(socket)
  if (h === null) socket.pause()
  else if (h.reading) {
    h.reading = false
    h.readStop()
  }
}

export function startReading(socket: Socket): void {
  if (socket.destroyed) return
  const h = consumedHandle(socket)
  if (h === null) socket.resume()
  else if (!h.reading) {
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

/** A callback of the owner threw inside a parse (rule 7): reported as this parse error. */
function callbackThrew(err: unknown): ParseError {
  return Object.assign(new Error('a parser callback threw', { cause: err }), { code: 'ZP_CALLBACK_THREW', bytesParsed: 0 })
}

const CLOSED: ParseError = Object.assign(new Error('parser closed'), { code: 'ZP_PARSER_CLOSED', bytesParsed: 0 })

/** A trailer of a name no trailer section may carry: the error the portable parser gives for it. */
function refusedTrailer(name: string): ParseError {
  return Object.assign(new Error(`Parse Error: ${name} in trailers`), { code: 'HPE_INVALID_HEADER_TOKEN', bytesParsed: 0 })
}

/**
 * One connection's parser. llhttp hands over headers in flushes of 32 pairs when a message has
 * many (or arrives in many reads); they are gathered here so `onHead` always gets all of them.
 * Keeps the binding's rules (see the top of this file) for its owner.
 */
export class H1Parser {
  readonly #engine: ParserEngine
  readonly #native: NativeParser
  readonly #kind: number
  readonly #maxHeaderSize: number
  #headers: string[] = []
  #url = ''
  #consumed = false
  /** `close()` was called: the native parser is freed on the next turn of the loop. */
  #closed = false
  /** An owner callback threw during the parse in progress (rule 7). */
  #threw: ParseError | null = null
  /** Set by the owner before a response is parsed: its request was HEAD. */
  skipBody = false

  /** `engine`: the process's (./engine.ts); tests pass the other one to compare the two. */
  constructor(kind: 'request' | 'response', events: ParserEvents, maxHeaderSize: number, engine: ParserEngine = ENGINE) {
    const { Parser: HTTPParser, methods } = engine
    this.#engine = engine
    const p = new HTTPParser()
    this.#kind = kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE
    this.#maxHeaderSize = maxHeaderSize
    p.initialize(this.#kind, {}, maxHeaderSize, 0)
    // The binding looks each callback up by index on every message. Every slot gets a value (null
    // where there is no callback): an empty one (no onBegin) sent each message's lookup up the
    // prototype chain, 1.3% of the proxy's samples under a small-GET load.
    for (let k = 0; k <= HTTPParser.kOnExecute; k++) p[k] = null
    if (events.onBegin !== undefined)
      p[HTTPParser.kOnMessageBegin] = () => {
        if (!this.#live()) return
        try {
          events.onBegin!()
        } catch (err) {
          this.#threw = callbackThrew(err)
        }
      }
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
      // Flushed pieces (a slow head) were gathered in #headers/#url; a fast head comes whole and
      // what was gathered is not its own. Either way nothing gathered outlives this head.
      if (headers === undefined) headers = this.#headers
      if (!url) url = this.#url
      // (No new array for the common head that came whole and gathered nothing.)
      if (this.#headers.length > 0) this.#headers = []
      this.#url = ''
      if (!this.#live()) return SKIP_BODY
      let r: number | void = 0
      try {
        r = events.onHead(major, minor, headers, method === undefined ? '' : (methods[method] ?? ''), url, status ?? 0, statusText ?? '', upgrade, keepAlive)
      } catch (err) {
        this.#threw = callbackThrew(err)
        return SKIP_BODY
      }
      return this.skipBody ? SKIP_BODY : (r ?? 0)
    }
    p[HTTPParser.kOnBody] = (chunk: Buffer) => {
      if (!this.#live()) return
      try {
        events.onBody(chunk)
      } catch (err) {
        this.#threw = callbackThrew(err)
      }
    }
    p[HTTPParser.kOnMessageComplete] = () => {
      // A chunked message's trailers arrive through kOnHeaders (with the message's URL) just
      // before this: dropped here, never left for the next message's head (node:http clears
      // them in parserOnMessageComplete too). The proxy does not pass trailers on, but refuses
      // the message if they name a framing or connection field: the parse ends as an error here.
      if (this.#headers.length > 0) {
        const refused = trailerProblem(this.#headers)
        this.#headers = []
        if (refused !== null && this.#live()) this.#threw = refusedTrailer(refused)
      }
      this.#url = ''
      if (!this.#live()) return
      try {
        events.onComplete()
      } catch (err) {
        this.#threw = callbackThrew(err)
      }
    }
    this.#native = p
  }

  /** Callbacks reach the owner only while the parser is open and no callback has thrown. */
  #live(): boolean {
    return !this.#closed && this.#threw === null
  }

  /** The error a callback threw in the parse that just returned, once; else `ret`. */
  #result(ret: number | ParseError): number | ParseError {
    const threw = this.#threw
    if (threw === null) return ret
    this.#threw = null
    return threw
  }

  get closed(): boolean {
    return this.#closed
  }

  /**
   * Lets the parser read the socket itself, as node:http's server does: each read goes from libuv
   * straight into llhttp, without a 64 KiB Buffer, a stream push and a 'data' event per read.
   * `onExecute` gets the bytes parsed of each read, or the parse error. The socket emits no 'data'
   * from then on ('end', 'close' and writes are as before). False if the socket cannot be consumed.
   */
  consume(socket: Socket, onExecute: (ret: number | ParseError) => void): boolean {
    if (!this.#engine.consumes || this.#closed || handleProblem(socket) !== null) return false
    const h = (socket as unknown as { _handle: StreamHandle })._handle
    h._consumed = true
    this.#native[this.#engine.Parser.kOnExecute] = (ret: number | ParseError) => {
      if (this.#closed) return
      const r = this.#result(ret)
      try {
        onExecute(r)
      } catch {
        // Rule 7: nothing reaches the binding. The owner's handler failed: the connection is in
        // no state anyone understands.
        socket.destroy()
      }
    }
    this.#native.consume(h)
    this.#consumed = true
    return true
  }

  /** Gives the socket's reads back to the socket (before handing it to someone else). Idempotent. */
  unconsume(): void {
    if (!this.#consumed) return
    this.#consumed = false
    this.#native[this.#engine.Parser.kOnExecute] = null
    this.#native.unconsume()
  }

  /** The buffer of the read being parsed; only inside the consume callback (rule 5). */
  currentBuffer(): Buffer {
    return this.#native.getCurrentBuffer()
  }

  /** Bytes consumed, or the parse error. Callbacks run synchronously inside. */
  execute(data: Buffer): number | ParseError {
    if (this.#closed) return CLOSED
    return this.#result(this.#native.execute(data))
  }

  /**
   * Starts over on a clean llhttp state, as node:http does for a parser it reuses. Needed after a
   * message that stopped the parser early (RAW_BODY, rule 6). Never from inside a callback.
   */
  reinitialize(): void {
    if (this.#closed) return
    this.#headers = []
    this.#url = ''
    this.#native.initialize(this.#kind, {}, this.#maxHeaderSize, 0)
  }

  /** The peer closed: ends a body delimited by the close, or reports a message cut short. */
  finish(): ParseError | null {
    if (this.#closed) return null
    const r = this.#result(this.#native.finish() ?? 0)
    return r instanceof Error ? r : null
  }

  /**
   * Done with it: unconsumed now, freed on the next turn of the loop (rule 1), whatever stack
   * this is called from. Idempotent; every later call into the parser is refused.
   */
  close(): void {
    if (this.#closed) return
    this.unconsume()
    this.#closed = true
    const native = this.#native
    setImmediate(() => native.close())
  }
}
