// The portable parser (issue 15): a strict HTTP/1.1 parser in JavaScript behind the interface of
// Node's llhttp binding (`_http_common.HTTPParser`), for a Node whose binding is gone or has
// another shape, or when ZOO_PROXY_PARSER=portable. H1Parser (./parser.ts) drives either.
//
// Why not the http-parser-js package, which implements that interface: it is lenient where an
// edge proxy must not be, and each of these is a request-smuggling class issue 17 closed: with
// Content-Length and Transfer-Encoding both, chunked wins; a Content-Length goes through `+value`
// ("0x10" is 16, "" is 0); chunk sizes through `parseInt` ("5 junk" is 5); a bare LF ends a line;
// header names may hold any byte but ':' and whitespace; folded lines are joined. Made strict it
// would keep only its loop over states. Here each state is llhttp's, written down from llhttp's
// own rules (`llhttp__after_headers_complete`, `llhttp_message_needs_eof`,
// `llhttp_should_keep_alive`) and checked against llhttp by test/unit/portable-vs-llhttp.test.ts:
// whatever this parser takes, llhttp takes too, framed the same; where llhttp is looser (two
// spaces after the method, `*a` as a target, chunk sizes past 2^53) this one refuses.
//
// Body pieces are copies, as llhttp's binding hands them over: an upstream connection reads into
// a buffer it reuses, and a piece still being written to a client must not change under it.

import { Buffer } from 'node:buffer'
import { METHODS } from 'node:http'
import { FIELD, TOKEN } from './headers.js'
import { MAX_CHUNK_EXTENSION_BYTES, MAX_CONTENT_LENGTH, refusedInTrailers, transferCodings } from './framing.js'

/** What llhttp's binding returns for a refused input (parser.ts's ParseError). */
type ParseError = Error & { readonly code: string; readonly reason: string; readonly bytesParsed: number }

const CR = 13
const LF = 10

/** The states, as in llhttp: a head is read line by line, a body byte by byte. */
const START = 0
const HEAD = 1
const SIZED = 2
const UNTIL_EOF = 3
const CHUNK_SIZE = 4
const CHUNK_EXT_NAME = 5
const CHUNK_EXT_VALUE_START = 6
const CHUNK_EXT_VALUE = 7
const CHUNK_EXT_QUOTED = 8
const CHUNK_EXT_PAIR = 9
const CHUNK_EXT_QUOTED_END = 10
const CHUNK_SIZE_LF = 11
const CHUNK_DATA = 12
const CHUNK_DATA_CR = 13
const CHUNK_DATA_LF = 14
const TRAILERS = 15
/** After an upgrade (or an owner's RAW_BODY): nothing is parsed until `initialize`. */
const PAUSED = 16
const FAILED = 17

const HEX = new Int8Array(256).fill(-1)
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c
for (let c = 0; c < 6; c++) HEX[0x41 + c] = HEX[0x61 + c] = 10 + c

/** RFC 9110 §5.6.4 qdtext (HTAB, SP, '!', '#'-'[', ']'-'~', obs-text) and quoted-pair's second byte. */
const QDTEXT = new Uint8Array(256)
const QPAIR = new Uint8Array(256)
for (let c = 0x20; c <= 0xff; c++) if (c !== 0x7f) QDTEXT[c] = QPAIR[c] = c === 0x22 || c === 0x5c ? 0 : 1
QDTEXT[9] = QPAIR[9] = QPAIR[0x22] = QPAIR[0x5c] = 1

/** The versions llhttp takes (others are HPE_INVALID_VERSION); the front answers all but 1.x itself. */
const VERSIONS = new Set(['0.9', '1.0', '1.1', '2.0'])
const STATUS_LINE = /^HTTP\/([0-9])\.([0-9]) ([0-9]{3})(?: (.*))?$/s
const VERSION = /^HTTP\/([0-9])\.([0-9])$/
/** CONNECT's authority-form (RFC 9112 §3.2.3): host and port, nothing else. */
const AUTHORITY = /^[A-Za-z0-9._~%!$&'()*+,;=:@[\]-]+$/
/** An absolute-form target (RFC 9112 §3.2.2): a scheme, `://`, an authority, then a path or query. */
const ABSOLUTE = /^[A-Za-z]+:\/\/[A-Za-z0-9._~%!$&'()*+,;=:@[\]-]*(?:[/?][\x21-\x7e]*)?$/

/** What the portable parser knows of methods: the ones this Node's http names (public `http.METHODS`). */
const METHOD_INDEX = new Map(METHODS.map((m, i) => [m, i]))

type Callback = ((...args: unknown[]) => unknown) | null

function parseError(code: string, reason: string, bytesParsed: number): ParseError {
  return Object.assign(new Error(`Parse Error: ${reason}`), { code, reason, bytesParsed })
}

/** Trims SP and HTAB at both ends (RFC 9110 §5.5: OWS around a field value is not part of it). */
function trimOws(s: string): string {
  let a = 0
  let b = s.length
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--
  return a === 0 && b === s.length ? s : s.slice(a, b)
}

const LEADING_OWS = /^[ \t]+/
/** Digits (leading zeros too: the value is bounded, by MAX_CONTENT_LENGTH), then spaces only. */
const CONTENT_LENGTH = /^[0-9]+ *$/

function trimSp(s: string): string {
  let a = 0
  let b = s.length
  while (a < b && s.charCodeAt(a) === 32) a++
  while (b > a && s.charCodeAt(b - 1) === 32) b--
  return s.slice(a, b)
}

function allOf(table: Uint8Array, s: string): boolean {
  for (let i = 0; i < s.length; i++) if (table[s.charCodeAt(i)] !== 1) return false
  return true
}

/** One connection's parser; the same methods and callback slots as llhttp's binding. */
export class PortableParser {
  static readonly REQUEST = 1
  static readonly RESPONSE = 2
  static readonly kOnMessageBegin = 0
  static readonly kOnHeaders = 1
  static readonly kOnHeadersComplete = 2
  static readonly kOnBody = 3
  static readonly kOnMessageComplete = 4
  static readonly kOnExecute = 5
  static readonly methods: readonly string[] = METHODS;

  [slot: number]: unknown

  #request = true
  #maxHeaderSize = 16 * 1024
  #state = START
  #error: ParseError | null = null
  /** A message that ends the connection was parsed: any later byte is an error (llhttp's rule). */
  #closed = false
  /** The part of a head line that came before the end of the last read. */
  #line = ''
  #startLine = true
  /** Bytes of URL (or reason), names and values so far; over maxHeaderSize: HPE_HEADER_OVERFLOW. */
  #headBytes = 0
  #headers: string[] = []
  #major = 0
  #minor = 0
  #method = -1
  #url = ''
  #status = 0
  #reason = ''
  #contentLength = -1
  #transferEncoding = false
  #chunked = false
  #connClose = false
  #connKeepAlive = false
  #connUpgrade = false
  #upgradeHeader = false
  #upgrade = false
  #skipBody = false
  /** Body bytes still to come (SIZED, CHUNK_DATA), or the chunk size being read. */
  #left = 0
  #digits = 0
  /** Bytes of the current chunk's extensions, as Node counts them: over MAX_CHUNK_EXTENSION_BYTES, refused. */
  #extBytes = 0

  initialize(type: number, _resource?: object, maxHeaderSize?: number, _lenient?: number): void {
    this.#request = type === PortableParser.REQUEST
    if (maxHeaderSize !== undefined && maxHeaderSize > 0) this.#maxHeaderSize = maxHeaderSize
    this.#state = START
    this.#error = null
    this.#closed = false
    this.#newMessage()
  }

  #newMessage(): void {
    this.#line = ''
    this.#startLine = true
    this.#headBytes = 0
    this.#headers = []
    this.#major = this.#minor = this.#status = 0
    this.#method = -1
    this.#url = this.#reason = ''
    this.#contentLength = -1
    this.#transferEncoding = this.#chunked = false
    this.#connClose = this.#connKeepAlive = this.#connUpgrade = this.#upgradeHeader = false
    this.#upgrade = this.#skipBody = false
    this.#left = this.#digits = 0
  }

  #call(slot: number, ...args: unknown[]): unknown {
    const f = this[slot] as Callback
    return typeof f === 'function' ? f(...args) : undefined
  }

  #fail(code: string, reason: string, at: number): ParseError {
    this.#state = FAILED
    this.#error = parseError(code, reason, at)
    return this.#error
  }

  /** Bytes consumed, or the parse error; callbacks run inside, as llhttp's do. */
  execute(data: Buffer): number | ParseError {
    if (this.#state === FAILED) return this.#error!
    if (this.#state === PAUSED) return 0
    const n = data.length
    let i = 0
    while (i < n) {
      const state = this.#state
      if (state === START) {
        const c = data[i]!
        // Empty lines before a message are skipped (RFC 9112 §2.2); llhttp skips any CR and LF.
        if (c === LF || c === CR) {
          i++
          continue
        }
        if (this.#closed) return this.#fail('HPE_CLOSED_CONNECTION', 'Data after `Connection: close`', i)
        this.#newMessage()
        this.#state = HEAD
        this.#call(PortableParser.kOnMessageBegin)
        continue
      }
      if (state === HEAD || state === TRAILERS) {
        const lf = data.indexOf(LF, i)
        if (lf < 0) {
          // A line longer than the whole head may be is refused before it is all in.
          if (this.#line.length + (n - i) > this.#maxHeaderSize + 64) return this.#fail('HPE_HEADER_OVERFLOW', 'Header overflow', i)
          // A CR with something other than LF after it is refused now, as llhttp refuses it at the
          // byte after the CR, not when an LF comes: it may never, and the client would get no
          // answer until the head deadline (issue 21 item 12). Only a CR ending the read may wait.
          const cr = data.indexOf(CR, i)
          if ((cr >= 0 && cr < n - 1) || this.#line.charCodeAt(this.#line.length - 1) === CR) return this.#fail('HPE_STRICT', 'Expected LF after CR', cr >= 0 ? cr + 1 : i)
          // A read that ends at a line's CR: the line is whole but for its LF, and llhttp refuses
          // it now if it cannot be one (a name without a colon, a start line cut short).
          if (cr === n - 1) {
            const whole = this.#line + data.toString('latin1', i, n - 1)
            const err = this.#startLine ? (this.#request ? this.#requestLine(whole, cr, false) : this.#statusLine(whole, cr, false)) : whole === '' ? null : this.#field(whole, cr, false)
            if (err !== null) return err
          }
          this.#line += data.toString('latin1', i, n)
          i = n
          // A start line that cannot become valid is refused now, as llhttp refuses its first bad
          // byte, not when its LF comes (it may never: the answer would wait for the idle sweep).
          if (this.#startLine && !this.#startPrefixOk(this.#line)) {
            return this.#fail(this.#request ? 'HPE_INVALID_METHOD' : 'HPE_INVALID_CONSTANT', 'Invalid start line', n)
          }
          break
        }
        let line = data.toString('latin1', i, lf)
        if (this.#line !== '') {
          line = this.#line + line
          this.#line = ''
        }
        i = lf + 1
        // CRLF ends a line; a bare LF or a CR inside one is refused (llhttp's strict mode).
        const cr = line.indexOf('\r')
        if (cr < 0 || cr !== line.length - 1) return this.#fail(cr < 0 ? 'HPE_CR_EXPECTED' : 'HPE_STRICT', 'Expected CRLF', i - 1)
        line = line.slice(0, -1)
        const err = state === HEAD ? this.#headLine(line, i) : this.#trailerLine(line, i)
        if (err !== null) return err
        if (this.#state === PAUSED) return i
        continue
      }
      if (state === SIZED || state === CHUNK_DATA) {
        const take = Math.min(n - i, this.#left)
        this.#left -= take
        this.#call(PortableParser.kOnBody, Buffer.from(data.subarray(i, i + take)))
        i += take
        if (this.#left === 0) {
          if (state === CHUNK_DATA) this.#state = CHUNK_DATA_CR
          else if (this.#complete()) return i
        }
        continue
      }
      if (state === UNTIL_EOF) {
        this.#call(PortableParser.kOnBody, Buffer.from(data.subarray(i, n)))
        i = n
        break
      }
      // The chunked framing, a byte at a time (RFC 9112 §7.1).
      const c = data[i]!
      const err = this.#chunkByte(c, i)
      if (err !== null) return err
      i++
    }
    return i
  }

  /** One byte of a chunk's size line or of the CRLF after its data. */
  #chunkByte(c: number, at: number): ParseError | null {
    const state = this.#state
    // Names and values count (quotes and escapes too), the `;` and `=` between them and the CR
    // do not: Node's count, so that both paths refuse at the same byte (framing.ts).
    const counted = state === CHUNK_EXT_QUOTED || state === CHUNK_EXT_PAIR || ((state === CHUNK_EXT_NAME || state === CHUNK_EXT_VALUE_START || state === CHUNK_EXT_VALUE) && c !== 0x3b && c !== 0x3d && c !== CR)
    if (counted && ++this.#extBytes > MAX_CHUNK_EXTENSION_BYTES) return this.#fail('HPE_CHUNK_EXTENSIONS_OVERFLOW', 'Chunk extensions overflow', at)
    switch (state) {
      case CHUNK_SIZE: {
        const h = HEX[c]!
        if (h >= 0) {
          this.#left = this.#left * 16 + h
          this.#digits++
          if (this.#left > Number.MAX_SAFE_INTEGER) return this.#fail('HPE_INVALID_CHUNK_SIZE', 'Chunk size overflow', at)
          return null
        }
        if (this.#digits === 0) return this.#fail('HPE_INVALID_CHUNK_SIZE', 'Invalid character in chunk size', at)
        if (c === 0x3b) {
          this.#state = CHUNK_EXT_NAME
          this.#extBytes = 0
        }
        else if (c === CR) this.#state = CHUNK_SIZE_LF
        else return this.#fail('HPE_INVALID_CHUNK_SIZE', 'Invalid character in chunk size', at)
        this.#digits = 0
        return null
      }
      // chunk-ext = *( ";" name [ "=" ( token / quoted-string ) ] ), no whitespace (as llhttp).
      // An empty name before `=` or `;` is taken, as llhttp takes it (`1;=v`, `1;;e`), not before
      // the CR: the native path cannot refuse it (Node's binding hands no extension to JS), the
      // proxy passes no extension on, and nginx skips extensions whole. One answer on both paths.
      case CHUNK_EXT_NAME:
        if (TOKEN[c] === 1) this.#digits++
        else if (c === 0x3d) this.#state = CHUNK_EXT_VALUE_START
        else if (c === 0x3b) this.#digits = 0
        else if (c === CR && this.#digits > 0) this.#state = CHUNK_SIZE_LF
        else return this.#fail('HPE_STRICT', 'Invalid character in chunk extensions', at)
        return null
      case CHUNK_EXT_VALUE_START:
      case CHUNK_EXT_VALUE:
        if (TOKEN[c] === 1) this.#state = CHUNK_EXT_VALUE
        else if (c === 0x22 && this.#state === CHUNK_EXT_VALUE_START) this.#state = CHUNK_EXT_QUOTED
        else if (c === 0x3b) this.#extNext()
        else if (c === CR) this.#state = CHUNK_SIZE_LF
        else return this.#fail('HPE_STRICT', 'Invalid character in chunk extensions value', at)
        return null
      case CHUNK_EXT_QUOTED:
        if (c === 0x22) this.#state = CHUNK_EXT_QUOTED_END
        else if (c === 0x5c) this.#state = CHUNK_EXT_PAIR
        else if (QDTEXT[c] !== 1) return this.#fail('HPE_STRICT', 'Invalid character in chunk extensions quoted value', at)
        return null
      case CHUNK_EXT_PAIR:
        if (QPAIR[c] !== 1) return this.#fail('HPE_STRICT', 'Invalid quoted-pair in chunk extensions', at)
        this.#state = CHUNK_EXT_QUOTED
        return null
      case CHUNK_EXT_QUOTED_END:
        if (c === 0x3b) this.#extNext()
        else if (c === CR) this.#state = CHUNK_SIZE_LF
        else return this.#fail('HPE_STRICT', 'Invalid character after chunk extensions quoted value', at)
        return null
      case CHUNK_SIZE_LF:
        if (c !== LF) return this.#fail('HPE_STRICT', 'Expected LF after chunk size', at)
        if (this.#left === 0) {
          // The last chunk: trailers (header lines) follow, then the empty line.
          this.#state = TRAILERS
          this.#headBytes = 0
        } else this.#state = CHUNK_DATA
        return null
      case CHUNK_DATA_CR:
        if (c !== CR) return this.#fail('HPE_STRICT', 'Expected CR after chunk data', at)
        this.#state = CHUNK_DATA_LF
        return null
      case CHUNK_DATA_LF:
        if (c !== LF) return this.#fail('HPE_STRICT', 'Expected LF after chunk data', at)
        this.#state = CHUNK_SIZE
        this.#left = 0
        this.#digits = 0
        return null
      default:
        return this.#fail('HPE_INTERNAL', 'Unknown state', at)
    }
  }

  #extNext(): void {
    this.#state = CHUNK_EXT_NAME
    this.#digits = 0
  }

  /** Whether `partial`, the start of a start line whose LF has not come yet, may still be valid. */
  #startPrefixOk(partial: string): boolean {
    if (!this.#request) return partial.length < 5 ? 'HTTP/'.startsWith(partial) : partial.startsWith('HTTP/')
    const sp = partial.indexOf(' ')
    if (sp >= 0) return METHOD_INDEX.has(partial.slice(0, sp))
    return METHODS.some((m) => m.startsWith(partial))
  }

  /** Counts URL, reason, names and values toward maxHeaderSize (as Node's binding counts them). */
  #count(bytes: number, at: number): ParseError | null {
    this.#headBytes += bytes
    return this.#headBytes > this.#maxHeaderSize ? this.#fail('HPE_HEADER_OVERFLOW', 'Header overflow', at) : null
  }

  #headLine(line: string, at: number): ParseError | null {
    if (this.#startLine) {
      this.#startLine = false
      return this.#request ? this.#requestLine(line, at) : this.#statusLine(line, at)
    }
    if (line === '') return this.#headersComplete(at)
    const err = this.#field(line, at)
    if (err !== null) return err
    const colon = line.indexOf(':')
    const name = line.slice(0, colon)
    const raw = line.slice(colon + 1)
    this.#headers.push(name, trimOws(raw))
    if (name.length === 14 || name.length === 17 || name.length === 10 || name.length === 16 || name.length === 7) return this.#framing(name.toLowerCase(), raw, at)
    return null
  }

  /** A header or trailer line: `token ":" OWS value OWS`, value of field bytes; counted unless `count` is false (a check before its LF). */
  #field(line: string, at: number, count = true): ParseError | null {
    const colon = line.indexOf(':')
    if (colon <= 0 || !allOf(TOKEN, line.slice(0, colon))) return this.#fail('HPE_INVALID_HEADER_TOKEN', 'Invalid header field char', at)
    if (!allOf(FIELD, line.slice(colon + 1))) return this.#fail('HPE_INVALID_HEADER_TOKEN', 'Invalid header value char', at)
    return count ? this.#count(line.length - 1, at) : null
  }

  /**
   * The headers that frame a message or end its connection (llhttp's F_* flags), from the value
   * as received. Whitespace is read as llhttp reads it, or refused: leading SP/HTAB is skipped, a
   * tab after a length or a coding is not whitespace there (llhttp would not take "chunked\t" for
   * chunked), so it is refused rather than guessed.
   */
  #framing(lower: string, raw: string, at: number): ParseError | null {
    const value = raw.replace(LEADING_OWS, '')
    if (lower === 'content-length') {
      if (this.#contentLength >= 0) return this.#fail('HPE_UNEXPECTED_CONTENT_LENGTH', 'Duplicate Content-Length', at)
      if (this.#transferEncoding) return this.#fail('HPE_INVALID_CONTENT_LENGTH', "Content-Length can't be present with Transfer-Encoding", at)
      if (!CONTENT_LENGTH.test(value)) return this.#fail('HPE_INVALID_CONTENT_LENGTH', 'Invalid character in Content-Length', at)
      const length = Number(value.trimEnd())
      if (length > MAX_CONTENT_LENGTH) return this.#fail('HPE_INVALID_CONTENT_LENGTH', 'Content-Length overflow', at)
      this.#contentLength = length
    } else if (lower === 'transfer-encoding') {
      if (this.#contentLength >= 0) return this.#fail('HPE_INVALID_CONTENT_LENGTH', "Content-Length can't be present with Transfer-Encoding", at)
      // chunked must be the last coding, and only once (RFC 9112 §6.1); a coding after it is
      // refused, and so is an empty element (framing.ts says why).
      const codings = transferCodings(value)
      if (codings === null) return this.#fail('HPE_INVALID_TRANSFER_ENCODING', 'Invalid `Transfer-Encoding` header value', at)
      for (const t of codings) {
        if (this.#chunked) return this.#fail('HPE_INVALID_TRANSFER_ENCODING', 'Invalid `Transfer-Encoding` header value', at)
        this.#chunked = t.toLowerCase() === 'chunked'
      }
      this.#transferEncoding = true
    } else if (lower === 'connection' || lower === 'proxy-connection') {
      // llhttp reads the old Proxy-Connection as Connection (http_parser did): so does this one.
      for (const token of value.split(',')) {
        const t = trimSp(token).toLowerCase()
        if (t === 'close') this.#connClose = true
        else if (t === 'keep-alive') this.#connKeepAlive = true
        else if (t === 'upgrade') this.#connUpgrade = true
        else if (!allOf(TOKEN, t)) return this.#fail('HPE_INVALID_HEADER_TOKEN', 'Invalid `Connection` header value', at)
      }
    } else if (lower === 'upgrade') this.#upgradeHeader = true
    return null
  }

  /** `count` false: a check before the line's LF (what it sets is set again then, and counted once). */
  #requestLine(line: string, at: number, count = true): ParseError | null {
    const sp = line.indexOf(' ')
    const method = sp < 0 ? undefined : METHOD_INDEX.get(line.slice(0, sp))
    if (method === undefined) return this.#fail('HPE_INVALID_METHOD', 'Invalid method encountered', at)
    this.#method = method
    const rest = line.slice(sp + 1)
    const sp2 = rest.indexOf(' ')
    const url = sp2 < 0 ? rest : rest.slice(0, sp2)
    // A target of visible ASCII: origin-form, absolute-form, `*`, or (CONNECT) authority-form.
    const ok = METHODS[method] === 'CONNECT' ? AUTHORITY.test(url) : /^[\x21-\x7e]+$/.test(url) && (url.charCodeAt(0) === 47 || url === '*' || ABSOLUTE.test(url))
    if (!ok) {
      return this.#fail('HPE_INVALID_URL', 'Invalid URL', at)
    }
    this.#url = url
    if (sp2 < 0) {
      // No version: an HTTP/0.9 request line, as llhttp reads it (the front refuses it).
      this.#major = 0
      this.#minor = 9
    } else {
      const v = VERSION.exec(rest.slice(sp2 + 1))
      if (v === null || !VERSIONS.has(`${v[1]}.${v[2]}`)) return this.#fail('HPE_INVALID_VERSION', 'Invalid HTTP version', at)
      this.#major = Number(v[1])
      this.#minor = Number(v[2])
    }
    return count ? this.#count(url.length, at) : null
  }

  #statusLine(line: string, at: number, count = true): ParseError | null {
    const m = STATUS_LINE.exec(line)
    if (m === null) return this.#fail(line.startsWith('HTTP/') ? 'HPE_INVALID_STATUS' : 'HPE_INVALID_CONSTANT', 'Invalid status line', at)
    if (!VERSIONS.has(`${m[1]}.${m[2]}`)) return this.#fail('HPE_INVALID_VERSION', 'Invalid HTTP version', at)
    this.#major = Number(m[1])
    this.#minor = Number(m[2])
    this.#status = Number(m[3])
    this.#reason = m[4] ?? ''
    return count ? this.#count(this.#reason.length, at) : null
  }

  /** llhttp_message_needs_eof: an answer framed by the connection's end. */
  #needsEof(): boolean {
    if (this.#request) return false
    const s = this.#status
    if ((s >= 100 && s < 200) || s === 204 || s === 304 || this.#skipBody) return false
    if (this.#transferEncoding && !this.#chunked) return true
    return !this.#chunked && this.#contentLength < 0
  }

  /** llhttp_should_keep_alive. */
  #keepAlive(): boolean {
    if (this.#major > 0 && this.#minor > 0) {
      if (this.#connClose) return false
    } else if (!this.#connKeepAlive) return false
    return !this.#needsEof()
  }

  /** The empty line after the headers: the head goes to its owner, then the body's framing. */
  #headersComplete(at: number): ParseError | null {
    const request = this.#request
    if (request && this.#transferEncoding && !this.#chunked) {
      // RFC 9112 §6.3: a request whose last coding is not chunked cannot be framed.
      return this.#fail('HPE_INVALID_TRANSFER_ENCODING', 'Request has invalid `Transfer-Encoding`', at)
    }
    const connect = request && PortableParser.methods[this.#method] === 'CONNECT'
    this.#upgrade = this.#upgradeHeader && this.#connUpgrade ? request || this.#status === 101 : connect
    const headers = this.#headers
    this.#headers = []
    const r = this.#call(
      PortableParser.kOnHeadersComplete,
      this.#major,
      this.#minor,
      headers,
      request ? this.#method : undefined,
      request ? this.#url : undefined,
      request ? undefined : this.#status,
      request ? undefined : this.#reason,
      this.#upgrade,
      this.#keepAlive(),
    )
    // 1: no body (a HEAD's answer); 2: no body, and stop here as for an upgrade.
    if (r === 1 || r === 2) this.#skipBody = true
    if (r === 2) this.#upgrade = true
    // llhttp__after_headers_complete, in its order.
    const s = this.#status
    const hasBody = this.#chunked || this.#contentLength > 0
    if ((this.#upgrade && (connect || this.#skipBody || !hasBody)) || (!request && s === 101)) {
      // "The rest of the message is in a different protocol": stop here, even for a 101 that
      // named no upgrade (its owner refuses it).
      this.#complete(true)
      return null
    }
    if (this.#skipBody || (!request && (s === 100 || s === 102 || s === 103 || s === 204 || s === 304))) this.#complete()
    else if (this.#chunked) {
      this.#state = CHUNK_SIZE
      this.#left = this.#digits = 0
    } else if (this.#transferEncoding || (this.#contentLength < 0 && this.#needsEof())) this.#state = UNTIL_EOF
    else if (this.#contentLength <= 0) this.#complete()
    else {
      this.#state = SIZED
      this.#left = this.#contentLength
    }
    return null
  }

  #trailerLine(line: string, at: number): ParseError | null {
    if (line === '') {
      this.#complete()
      return null
    }
    // Trailers are checked as header lines and counted, then dropped (the proxy passes none on).
    // A framing or connection field there is refused (framing.ts): llhttp would take some of
    // them as if they were in the head.
    const err = this.#field(line, at)
    if (err !== null) return err
    const name = line.slice(0, line.indexOf(':')).toLowerCase()
    if (refusedInTrailers(name)) return this.#fail('HPE_INVALID_HEADER_TOKEN', `${name} in trailers`, at)
    return null
  }

  /** The message's last byte: true if parsing stops here (an upgrade, or the owner's RAW_BODY). */
  #complete(stop = this.#upgrade): boolean {
    // Whether the connection goes on is settled now, with a HEAD's skipped body known (as llhttp).
    const keepAlive = this.#keepAlive()
    this.#state = START
    this.#call(PortableParser.kOnMessageComplete)
    if (this.#state === FAILED) return true
    if (stop) {
      this.#state = PAUSED
      return true
    }
    if (!keepAlive) this.#closed = true
    return false
  }

  /** The peer closed: ends a body framed by the close; anything cut short is an error. */
  finish(): ParseError | undefined {
    const s = this.#state
    if (s === START || s === PAUSED || s === FAILED) return undefined
    if (s === UNTIL_EOF) {
      this.#complete()
      return undefined
    }
    return this.#fail('HPE_INVALID_EOF_STATE', 'Invalid EOF state', 0)
  }

  /** Nothing native to free. */
  close(): void {}

  /** Reads only through `execute`: a socket is never consumed (H1Parser checks the engine first). */
  consume(): void {
    throw new Error('the portable parser does not consume sockets')
  }

  unconsume(): void {}

  getCurrentBuffer(): Buffer {
    throw new Error('the portable parser does not consume sockets')
  }
}
