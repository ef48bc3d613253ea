// What the proxy does with an upstream answer's head: which headers are hop-by-hop, the header
// lines the client gets, and a parser for the plain heads nearly every upstream sends.

/**
 * The one limit on a head, in bytes, on every path: requests and answers, llhttp or
 * parsePlainHead, fresh connection or one whose read buffer has grown (Node's default).
 */
export const MAX_HEADER_BYTES = 16 * 1024

/** RFC 9110 §7.6.1 connection-specific headers, plus `expect` (the proxy answers 100-continue itself). */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'http2-settings',
])

/** 1 at the length of every HOP_BY_HOP name and of content-length. */
const SPECIAL_LENGTHS = new Uint8Array(32)
for (const name of [...HOP_BY_HOP, 'content-length']) SPECIAL_LENGTHS[name.length] = 1

/** An upstream answer's head, as the client will get it. */
export class ResponseHead {
  readonly status: number
  readonly text: string
  /** Header lines (`name: value\r\n` each), hop-by-hop ones and Content-Length left out. */
  readonly lines: string
  /**
   * The answer's Content-Length as the number it was framed by (-1: none). Its line is not in
   * `lines`: the proxy writes the framing toward the client itself, never the upstream's bytes.
   */
  readonly contentLength: number
  #raw: readonly string[] | null

  /** `raw`: the headers as [name, value, ...], when they were parsed that way. */
  constructor(status: number, text: string, lines: string, contentLength: number, raw: readonly string[] | null = null) {
    this.status = status
    this.text = text
    this.lines = lines
    this.contentLength = contentLength
    this.#raw = raw
  }

  /** From llhttp's [name, value, ...] list (which llhttp has checked: at most one length, digits). */
  static fromRaw(status: number, text: string, raw: readonly string[]): ResponseHead {
    const { lines, contentLength } = responseLines(raw)
    return new ResponseHead(status, text, lines, contentLength, raw)
  }

  /** The first value of header `name` (lower case), or undefined. */
  header(name: string): string | undefined {
    return rawHeader((this.#raw ??= splitLines(this.lines)), name)
  }
}

/** The first value of header `name` (lower case) in a raw [name, value, ...] list, or undefined. */
export function rawHeader(raw: readonly string[], name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!
    if (n.length === name.length && n.toLowerCase() === name) return raw[i + 1]!
  }
  return undefined
}

function splitLines(lines: string): string[] {
  const out: string[] = []
  for (const line of lines.split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) out.push(line.slice(0, colon), line.slice(colon + 1).trim())
  }
  return out
}

/**
 * An upstream's raw response headers ([name, value, ...]) as header lines for the client,
 * hop-by-hop ones (and those its `Connection` lists) and Content-Length left out; the length's
 * value as a number (-1: none).
 */
export function responseLines(raw: readonly string[]): { lines: string; contentLength: number } {
  let lines = ''
  let contentLength = -1
  let connection: string | null = null
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    // Only names as long as a hop-by-hop one or Content-Length are lower-cased and looked up.
    if (SPECIAL_LENGTHS[name.length] === 1) {
      const lower = name.toLowerCase()
      if (HOP_BY_HOP.has(lower)) {
        if (lower === 'connection') connection = connection === null ? raw[i + 1]! : `${connection},${raw[i + 1]!}`
        continue
      }
      if (lower === 'content-length') {
        contentLength = Number(raw[i + 1])
        continue
      }
    }
    lines += `${name}: ${raw[i + 1]!}\r\n`
  }
  // Rare: the upstream named more headers in `Connection`; they are hop-by-hop too. (The plain
  // `keep-alive` or `close` nearly every upstream sends is settled without a regex.)
  const c = connection?.toLowerCase()
  if (c !== undefined && c !== 'keep-alive' && c !== 'close' && /[^\s,]/.test(c.replace(/\b(?:keep-alive|close)\b/g, ''))) {
    const listed = new Set(c.split(',').map((t) => t.trim()))
    lines = lines
      .split('\r\n')
      .filter((l) => l === '' || !listed.has(l.slice(0, l.indexOf(':')).toLowerCase()))
      .join('\r\n')
  }
  return { lines, contentLength }
}

/** What `parsePlainHead` makes of a head. */
export interface PlainHead {
  readonly head: ResponseHead
  readonly contentLength: number
  readonly keepAlive: boolean
  /** From `Keep-Alive: timeout=N`, in seconds; -1: not given. */
  readonly keepAliveTimeoutS: number
}

const CR = 13
const LF = 10
const SP = 32
const HTAB = 9
const COLON = 58

/** RFC 9110 §5.6.2 tchar: what a header name is made of. */
export const TOKEN = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1
for (let c = 0x30; c <= 0x39; c++) TOKEN[c] = 1
for (let c = 0x41; c <= 0x5a; c++) TOKEN[c] = TOKEN[c + 0x20] = 1
/** RFC 9110 §5.5 field-vchar, SP and HTAB: what a header value (and a reason phrase) is made of. */
export const FIELD = new Uint8Array(256)
for (let c = 0x20; c <= 0xff; c++) FIELD[c] = c === 0x7f ? 0 : 1
FIELD[HTAB] = 1

const KEEP_ALIVE_TIMEOUT = /timeout=(\d+)/i

/** The `timeout=N` of a Keep-Alive header, in seconds, or -1. */
export function keepAliveTimeoutS(value: string): number {
  const m = KEEP_ALIVE_TIMEOUT.exec(value)
  return m === null ? -1 : Number(m[1])
}

/**
 * Parses the answer head in `buf[0, end)` (`end` just past its blank line) when it is of the plain
 * kind: HTTP/1.0 or 1.1, a final status other than 204 and 304, exactly one Content-Length, no
 * Transfer-Encoding, no folded lines, at most one `Connection`, saying keep-alive or close, no other
 * hop-by-hop header but Keep-Alive. Anything else (and anything malformed) gives null, and the
 * bytes go to llhttp as they are, which frames or refuses them as node:http would.
 *
 * Why: nearly every answer is of this kind, and parsing it here costs a fraction of llhttp's round
 * trip through the binding (a call into C++, a call back into JS with a string per header, a
 * second for the message's end), and the client's header lines are cut from the bytes as they
 * came instead of being joined again from the strings.
 */
export function parsePlainHead(buf: Buffer, end: number): PlainHead | null {
  // A long head is llhttp's to judge (and refuse past MAX_HEADER_BYTES), whatever the read size.
  if (end > MAX_HEADER_BYTES) return null
  // Status line: "HTTP/1.x NNN reason\r\n".
  if (end < 19 || buf[0] !== 0x48 || buf[1] !== 0x54 || buf[2] !== 0x54 || buf[3] !== 0x50 || buf[4] !== 0x2f || buf[5] !== 0x31 || buf[6] !== 0x2e || buf[8] !== SP) return null
  const minor = buf[7]! - 0x30
  if (minor !== 0 && minor !== 1) return null
  const d0 = buf[9]! - 0x30
  const d1 = buf[10]! - 0x30
  const d2 = buf[11]! - 0x30
  if (d0 < 2 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9 || buf[12] !== SP) return null
  const status = d0 * 100 + d1 * 10 + d2
  if (status === 204 || status === 304) return null
  let i = 13
  while (i < end && FIELD[buf[i]!] === 1) i++
  if (buf[i] !== CR || buf[i + 1] !== LF) return null
  const text = i === 15 && buf[13] === 0x4f && buf[14] === 0x4b ? 'OK' : buf.toString('latin1', 13, i)
  i += 2
  let lines = ''
  /** Start of the lines not yet added to `lines` (hop-by-hop lines are cut out). */
  let from = i
  let contentLength = -1
  let keepAlive = minor === 1
  let connection = false
  let timeoutS = -1
  for (;;) {
    if (buf[i] === CR) {
      if (buf[i + 1] !== LF || i + 2 !== end) return null
      break
    }
    const nameAt = i
    while (TOKEN[buf[i]!] === 1) i++
    const nameLength = i - nameAt
    if (nameLength === 0 || buf[i] !== COLON) return null
    i++
    while (buf[i] === SP || buf[i] === HTAB) i++
    const valueAt = i
    while (FIELD[buf[i]!] === 1) i++
    if (buf[i] !== CR || buf[i + 1] !== LF) return null
    const lineEnd = i
    i += 2
    // Names are compared as bytes: no string is made for a header that is passed on as it is.
    if (SPECIAL_LENGTHS[nameLength] !== 1) continue
    if (equalsLower(buf, nameAt, nameLength, 'content-length')) {
      if (contentLength >= 0) return null
      // Digits and nothing after them: llhttp refuses some trailing whitespace, so any is its call.
      // Cut out like the hop-by-hop lines: the client gets the number, written by the proxy.
      contentLength = digits(buf, valueAt, lineEnd)
      if (contentLength < 0) return null
    } else if (equalsLower(buf, nameAt, nameLength, 'connection')) {
      // A second one (close and keep-alive both?) is llhttp's to settle.
      if (connection) return null
      connection = true
      // Compared as sent, trailing whitespace included: llhttp does not take "close\t" for close.
      if (equalsLower(buf, valueAt, lineEnd - valueAt, 'close')) keepAlive = false
      else if (equalsLower(buf, valueAt, lineEnd - valueAt, 'keep-alive')) keepAlive = true
      else return null
    } else if (equalsLower(buf, nameAt, nameLength, 'keep-alive')) {
      timeoutS = keepAliveTimeoutS(buf.toString('latin1', valueAt, lineEnd))
    } else if (HOP_BY_HOP.has(buf.toString('latin1', nameAt, nameAt + nameLength).toLowerCase())) return null
    else continue
    // Cut the line out of what the client gets.
    if (nameAt > from) lines += buf.toString('latin1', from, nameAt)
    from = i
  }
  if (contentLength < 0) return null
  if (i > from) lines += buf.toString('latin1', from, i)
  return { head: new ResponseHead(status, text, lines, contentLength), contentLength, keepAlive, keepAliveTimeoutS: timeoutS }
}

/**
 * `buf[at, at + length)` is `lower` (lower-case letters and '-') in any case. OR-ing 0x20 folds
 * only upper-case letters onto lower-case ones here: '-' stays, and no other byte of a name or a
 * value (CR, the one that would become '-', ends a value) turns into either.
 */
function equalsLower(buf: Buffer, at: number, length: number, lower: string): boolean {
  if (length !== lower.length) return false
  for (let k = 0; k < length; k++) if ((buf[at + k]! | 0x20) !== lower.charCodeAt(k)) return false
  return true
}

/** A Content-Length value: 1 to 15 digits (a safe integer), or -1. */
function digits(buf: Buffer, from: number, to: number): number {
  if (to <= from || to - from > 15) return -1
  let n = 0
  for (let i = from; i < to; i++) {
    const d = buf[i]! - 0x30
    if (d < 0 || d > 9) return -1
    n = n * 10 + d
  }
  return n
}
