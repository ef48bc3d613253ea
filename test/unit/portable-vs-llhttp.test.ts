// The portable parser (lib/http/h1/portable.ts) must never accept what llhttp refuses, and must
// frame whatever it accepts exactly as llhttp does: the same heads, the same body bytes, the same
// message ends, keep-alive and upgrade, the same stop after an upgrade. Both engines are fed the
// same seeded mutations of real requests and answers, split into reads at random places; where
// the portable parser refuses, it must not have passed on anything llhttp would not have. This is
// the class test of issue 15's portable path: a difference in framing between the two parsers is
// a request-smuggling hole on the portable path.

import { expect } from 'chai'
import { chooseEngine } from '../../lib/http/h1/engine.js'
import type { ParserEngine } from '../../lib/http/h1/engine.js'
import { framingProblem } from '../../lib/http/h1/framing.js'
import { MAX_HEADER_BYTES } from '../../lib/http/h1/headers.js'
import { H1Parser } from '../../lib/http/h1/parser.js'
import { seededRandom } from '../support/random.js'

type Event = string | [string, ...unknown[]]

interface Trace {
  events: Event[]
  /** 'ok', 'error', or `pause@N` (the stop after an upgrade, at byte N). */
  end: string
}

/** What `engine` makes of `bytes` read in pieces cut at `cuts`; `headAnswer` is onHead's return. */
function trace(engine: ParserEngine, kind: 'request' | 'response', bytes: Buffer, cuts: number[], headAnswer: number): Trace {
  const P = engine.Parser
  const p = new P()
  p.initialize(kind === 'request' ? P.REQUEST : P.RESPONSE, {}, MAX_HEADER_BYTES, 0)
  for (let k = 0; k <= P.kOnExecute; k++) p[k] = null
  const events: Event[] = []
  p[P.kOnMessageBegin] = () => events.push('begin')
  p[P.kOnHeadersComplete] = (major: number, minor: number, headers: string[] | undefined, method: number | undefined, url: string | undefined, status: number | undefined, text: string | undefined, upgrade: boolean, keepAlive: boolean) => {
    events.push(['head', major, minor, headers ?? [], method === undefined ? null : engine.methods[method], url ?? '', status ?? 0, text ?? '', upgrade, keepAlive])
    return headAnswer
  }
  p[P.kOnBody] = (chunk: Buffer) => {
    const last = events[events.length - 1]
    if (Array.isArray(last) && last[0] === 'body') last[1] += chunk.toString('latin1')
    else events.push(['body', chunk.toString('latin1')])
  }
  p[P.kOnMessageComplete] = () => events.push('done')
  let at = 0
  let end = 'ok'
  for (const to of [...cuts, bytes.length]) {
    if (to <= at) continue
    const r = p.execute(bytes.subarray(at, to))
    if (typeof r !== 'number') {
      end = 'error'
      break
    }
    if (r < to - at) {
      end = `pause@${at + r}`
      break
    }
    at = to
  }
  if (end === 'ok' && p.finish() instanceof Error) end = 'error'
  p.close()
  return { events, end }
}

const native = chooseEngine(undefined)
const portable = chooseEngine('portable')

/** Portable's events are native's, up to where portable stopped (a body may stop part-way). */
function isPrefix(mine: Event[], theirs: Event[]): boolean {
  if (mine.length > theirs.length) return false
  for (let i = 0; i < mine.length; i++) {
    const a = JSON.stringify(mine[i])
    if (a === JSON.stringify(theirs[i])) continue
    const m = mine[i]
    const t = theirs[i]
    const partBody = i === mine.length - 1 && Array.isArray(m) && Array.isArray(t) && m[0] === 'body' && t[0] === 'body' && String(t[1]).startsWith(String(m[1]))
    if (!partBody) return false
  }
  return true
}

const REQUESTS = [
  'GET /a/b?c=d HTTP/1.1\r\nHost: svc\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n',
  'POST /submit HTTP/1.1\r\nHost: svc\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello',
  'POST /up HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n',
  'GET /one HTTP/1.1\r\nHost: svc\r\n\r\nGET /two HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n',
  'GET /ws HTTP/1.1\r\nHost: svc\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x81\x05hello',
  'GET / HTTP/1.0\r\nHost: svc\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n',
  'GET http://svc/abs HTTP/1.1\r\nHost: svc\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: svc\r\n\r\n',
  'CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\ntunnel',
  'PUT /x HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabcDELETE /y HTTP/1.1\r\nHost: svc\r\n\r\n',
]
const RESPONSES = [
  'HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3;a="b c"\r\n!!!\r\n0\r\n\r\n',
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end',
  'HTTP/1.1 204 No Content\r\nServer: x\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n',
  'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n',
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi',
  'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc',
  'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\nTrailer-A: b\r\n\r\n',
]
const BYTES = [0x00, 0x09, 0x0a, 0x0d, 0x20, 0x3a, 0x3b, 0x3d, 0x2c, 0x7f, 0x80, 0xff, 0x30, 0x35, 0x39, 0x41, 0x46, 0x61, 0x66, 0x2d, 0x22, 0x5c, 0x2f, 0x2a]
const LINES = [
  'Content-Length: 5\r\n',
  'Content-Length: 0\r\n',
  'Content-Length: 05\r\n',
  'Content-Length:  3 \r\n',
  'Transfer-Encoding: chunked\r\n',
  'Transfer-Encoding: gzip\r\n',
  'Transfer-Encoding: chunked, gzip\r\n',
  'Transfer-Encoding: identity, chunked\r\n',
  'Connection: close\r\n',
  'Connection: keep-alive\r\n',
  'Connection: keep-alive, Upgrade\r\n',
  'Proxy-Connection: close\r\n',
  'Proxy-Connection: keep-alive\r\n',
  'Upgrade: h2c\r\n',
  ' folded\r\n',
  'X-A: b\r\n',
  'X-Empty:\r\n',
  'Keep-Alive: timeout=1\r\n',
  '\r\n',
  '5\r\nhello\r\n',
  '0\r\n\r\n',
]

function lineStarts(bytes: number[]): number[] {
  return bytes.flatMap((b, i) => (b === 0x0a ? [i + 1] : []))
}

function mutate(base: string, random: () => number): Buffer {
  const bytes = [...Buffer.from(base, 'latin1')]
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!
  const edits = 1 + Math.floor(random() * 3)
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(random() * (bytes.length + 1))
    const what = random()
    if (what < 0.25) bytes.splice(at, 0, pick(BYTES))
    else if (what < 0.4) bytes.splice(at, 1)
    else if (what < 0.6) bytes[Math.min(at, bytes.length - 1)] = pick(BYTES)
    else if (what < 0.65) {
      // A long line around the head limit, or far beyond it.
      const n = random() < 0.8 ? MAX_HEADER_BYTES - 300 + Math.floor(random() * 600) : 20_000 + Math.floor(random() * 20_000)
      bytes.splice(pick(lineStarts(bytes)), 0, ...Buffer.from(`X-Long: ${'l'.repeat(n)}\r\n`, 'latin1'))
    } else if (what < 0.85) bytes.splice(pick(lineStarts(bytes)), 0, ...Buffer.from(pick(LINES), 'latin1'))
    else {
      const c = bytes[at]
      if (c !== undefined && ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a))) bytes[at] = c ^ 0x20
    }
  }
  return Buffer.from(bytes)
}

function cutsFor(length: number, random: () => number): number[] {
  const n = Math.floor(random() * 4)
  return Array.from({ length: n }, () => Math.floor(random() * length)).sort((a, b) => a - b)
}

describe('the portable parser against llhttp', () => {
  before(function () {
    // On a Node without a usable binding there is nothing to compare with.
    if (native.name !== 'native') this.skip()
  })

  it('reads every unmutated request and answer exactly as llhttp does, in one read and byte by byte', () => {
    for (const [kind, list] of [['request', REQUESTS], ['response', RESPONSES]] as const) {
      for (const base of list) {
        const bytes = Buffer.from(base, 'latin1')
        const theirs = trace(native, kind, bytes, [], 0)
        expect(trace(portable, kind, bytes, [], 0), base).to.deep.equal(theirs)
        const everyByte = Array.from({ length: bytes.length }, (_, i) => i)
        expect(trace(portable, kind, bytes, everyByte, 0), base).to.deep.equal(theirs)
        expect(theirs.end, base).to.not.equal('error')
      }
    }
  })

  it('answers a HEAD (no body) and a raw-body stop (RAW_BODY) as llhttp does', () => {
    for (const base of RESPONSES) {
      const bytes = Buffer.from(base, 'latin1')
      for (const answer of [1, 2]) expect(trace(portable, 'response', bytes, [], answer), `${answer} ${base}`).to.deep.equal(trace(native, 'response', bytes, [], answer))
    }
  })

  it('reads Proxy-Connection as llhttp does (as Connection), both ways', () => {
    const cases: ['request' | 'response', string][] = [
      ['request', 'GET /1 HTTP/1.1\r\nHost: t\r\nProxy-Connection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n'],
      ['request', 'GET / HTTP/1.0\r\nHost: t\r\nProxy-Connection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n'],
      ['request', 'GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nProxy-Connection: upgrade\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n'],
      ['response', 'HTTP/1.1 200 OK\r\nProxy-Connection: close\r\nContent-Length: 5\r\n\r\nhello'],
    ]
    for (const [kind, text] of cases) {
      const bytes = Buffer.from(text, 'latin1')
      expect(trace(portable, kind, bytes, [], 0), text).to.deep.equal(trace(native, kind, bytes, [], 0))
    }
  })

  it("refuses a chunk's extensions past 16 KiB, as Node does (CVE-2024-22019), and takes them up to it", () => {
    const chunked = (ext: string) => Buffer.from(`POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1;${ext}\r\nx\r\n1;${ext}\r\ny\r\n0\r\n\r\n`, 'latin1')
    for (const n of [16_000, 16_384]) expect(trace(portable, 'request', chunked('e'.repeat(n)), [], 0), String(n)).to.deep.equal(trace(native, 'request', chunked('e'.repeat(n)), [], 0))
    for (const n of [16_385, 100_000]) {
      expect(trace(native, 'request', chunked('e'.repeat(n)), [], 0).end, `llhttp ${n}`).to.equal('error')
      expect(trace(portable, 'request', chunked('e'.repeat(n)), [], 0).end, String(n)).to.equal('error')
    }
  })

  it('refuses a start line that cannot become valid at its first bad read, before its LF, as llhttp does', () => {
    for (const [kind, text] of [
      ['request', 'GET / HTTP/1.1\r\nHost: t\r\n\r\nxyz'],
      ['request', 'G3T'],
      ['request', 'GETX / HT'],
      ['response', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTQ'],
    ] as const) {
      const bytes = Buffer.from(text, 'latin1')
      expect(trace(native, kind, bytes, [], 0).end, `llhttp: ${text}`).to.equal('error')
      expect(trace(portable, kind, bytes, [], 0).end, text).to.equal('error')
    }
    // A valid start, still waiting for the rest, is not refused.
    for (const [kind, text] of [['request', 'GE'], ['request', 'M-SEARCH * HT'], ['response', 'HTT'], ['response', 'HTTP/1.1 20']] as const) {
      expect(trace(portable, kind, Buffer.from(text, 'latin1'), [], 0), text).to.deep.equal(trace(native, kind, Buffer.from(text, 'latin1'), [], 0))
    }
  })

  it('refuses the smuggling classes llhttp refuses', () => {
    const refused = [
      'POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello',
      'POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello',
      'POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nhello',
      'POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n',
      'GET / HTTP/1.1\nHost: a\n\n',
      'GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n',
      'GET / HTTP/1.1\r\nHost : a\r\n\r\n',
      'GET / HTTP/1.1\r\nX: a\rb\r\n\r\n',
      'GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n',
    ]
    for (const s of refused) {
      const bytes = Buffer.from(s, 'latin1')
      expect(trace(native, 'request', bytes, [], 0).end, `llhttp: ${s}`).to.equal('error')
      expect(trace(portable, 'request', bytes, [], 0).end, s).to.equal('error')
    }
  })

  it('accepts nothing llhttp refuses and frames the rest alike (30,000 seeded cases, split into reads)', function () {
    this.timeout(120_000)
    // PORTABLE_SEED and PORTABLE_CASES run it longer, or elsewhere, by hand.
    const random = seededRandom(Number(process.env.PORTABLE_SEED ?? 20261130))
    // Under Stryker (its workers carry STRYKER_MUTATOR_WORKER) a tenth of them, from the same
    // seed: every mutant of framing.ts reruns this test, and the whole sample, instrumented, ran
    // past its timeout; the first 3,000 cases still reach every framing rule.
    const cases = Number(process.env.PORTABLE_CASES ?? (process.env.STRYKER_MUTATOR_WORKER === undefined ? 30_000 : 3_000))
    let same = 0
    let stricter = 0
    for (let i = 0; i < cases; i++) {
      const kind = i % 2 === 0 ? 'request' : 'response'
      const list = kind === 'request' ? REQUESTS : RESPONSES
      const bytes = mutate(list[Math.floor(i / 2) % list.length]!, random)
      const cuts = cutsFor(bytes.length, random)
      const answer = kind === 'response' && random() < 0.15 ? 1 : 0
      const theirs = trace(native, kind, bytes, [], answer)
      const mine = trace(portable, kind, bytes, cuts, answer)
      const what = `${kind} ${JSON.stringify(bytes.toString('latin1').slice(0, 2000)).replace(/[\x7f-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`)} cuts ${JSON.stringify(cuts)} answer ${answer}`
      if (mine.end === 'error') {
        // Refusing more than llhttp is allowed; passing on more before the refusal is not.
        expect(isPrefix(mine.events, theirs.events), `${what}\nportable ${JSON.stringify(mine)}\nllhttp ${JSON.stringify(theirs)}`).to.equal(true)
        if (theirs.end !== 'error') stricter++
        continue
      }
      expect(mine, what).to.deep.equal(theirs)
      same++
    }
    // About a quarter of the mutations still parse, and are read alike. The portable parser
    // refuses some malformed inputs llhttp lets through (a stray byte inside a Connection token,
    // "chunked, gzip" in an answer, two spaces in a request line): about 6% of what llhttp takes.
    expect(same).to.be.above(cases / 5)
    expect(stricter).to.be.below(same / 10)
  })
})

/**
 * What the proxy makes of `bytes` on one path, as far as framing goes: the messages it would
 * serve (head, body, keep-alive), and whether it refuses what comes next, or still waits. Both
 * paths run through H1Parser (which adds the trailer rule for both) and the front's framing rule
 * (`framingProblem`, which the front and the upstream side apply to every head with a framing
 * field). No `finish`: a refusal must come from the bytes, not from the peer closing.
 */
function verdict(engine: ParserEngine, kind: 'request' | 'response', bytes: Buffer, cuts: number[]): { served: string[]; end: 'refused' | 'waiting' } {
  const served: string[] = []
  let current = ''
  let refused = false
  const p = new H1Parser(
    kind,
    {
      onHead(major, minor, headers, method, url, status, _text, upgrade, keepAlive) {
        if (refused) return
        if (framingProblem(headers) !== null) refused = true
        current = `${method}${status} ${url} ${major}.${minor} ${JSON.stringify(headers)} upgrade=${upgrade} keepAlive=${keepAlive} body=`
      },
      onBody(chunk) {
        current += chunk.toString('latin1')
      },
      onComplete() {
        if (!refused) served.push(current)
      },
    },
    MAX_HEADER_BYTES,
    engine,
  )
  let at = 0
  for (const to of [...cuts, bytes.length]) {
    if (refused || to <= at) continue
    const r = p.execute(bytes.subarray(at, to))
    if (typeof r !== 'number' || r < to - at) refused ||= typeof r !== 'number'
    if (typeof r === 'number' && r < to - at) break
    at = to
  }
  p.close()
  return { served, end: refused ? 'refused' : 'waiting' }
}

/** The framing classes of issue 21 item 12, generated: [kind, bytes] each. */
function framingClasses(): ['request' | 'response', string][] {
  const out: ['request' | 'response', string][] = []
  const next = 'GET /next HTTP/1.1\r\nHost: t\r\n\r\n'
  const chunkedBody = '5\r\nhello\r\n0\r\n\r\n'
  // A CR followed by anything but LF, at every place of a request and an answer (head, chunk
  // lines, trailers), and a CR at the end of the bytes (which may still be followed by its LF).
  for (const [kind, base] of [
    ['request', 'POST /p?q=1 HTTP/1.1\r\nHost: t\r\nX-A: b c\r\nTransfer-Encoding: chunked\r\n\r\n5;e=v\r\nhello\r\n0\r\nX-T: 1\r\n\r\n' + next],
    ['request', 'GET /g HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n' + next],
    ['response', 'HTTP/1.1 200 OK\r\nServer: s\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n'],
  ] as const) {
    for (let i = 0; i <= base.length; i++) {
      out.push([kind, base.slice(0, i) + '\r' + base.slice(i)])
      out.push([kind, base.slice(0, i) + '\r'])
      if (base[i] === '\n') out.push([kind, base.slice(0, i) + 'X' + base.slice(i + 1)])
    }
  }
  // Long digit runs in a Content-Length, with and without leading zeros, around 2^53 and 2^64.
  for (const value of ['5', '9007199254740991', '9007199254740992', '18446744073709551615', '18446744073709551616', '99999999999999999999999']) {
    for (const zeros of [0, 1, 10, 14, 15, 16, 20, 100, 5000]) {
      for (const pad of ['', ' ', '  ']) {
        const cl = `${'0'.repeat(zeros)}${value}${pad}`
        out.push(['request', `POST /l HTTP/1.1\r\nHost: t\r\nContent-Length: ${cl}\r\n\r\nhello${next}`])
        out.push(['response', `HTTP/1.1 200 OK\r\nContent-Length: ${cl}\r\n\r\nhello`])
      }
    }
  }
  // Transfer-Encoding as a list: empty elements, whitespace, case, one field or two.
  const codings = ['chunked', 'Chunked', 'CHUNKED', 'gzip', 'identity', '', ' ', '\t', 'chunked\t', '\tchunked']
  const joins = [',', ', ', ' ,', ',,', ' , ']
  const te: string[] = []
  for (const a of codings) {
    te.push(a)
    for (const j of joins) for (const b of codings) te.push(`${a}${j}${b}`)
  }
  for (const j of joins) te.push(`gzip${j}gzip${j}chunked`, `${j}chunked${j}`)
  for (const value of te) {
    out.push(['request', `POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ${value}\r\n\r\n${chunkedBody}${next}`])
    out.push(['request', `POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:${value}\r\n\r\n${chunkedBody}${next}`])
    out.push(['response', `HTTP/1.1 200 OK\r\nTransfer-Encoding: ${value}\r\n\r\n${chunkedBody}`])
  }
  for (const [a, b] of [['', 'chunked'], ['chunked', ''], ['gzip', 'chunked'], [',', 'chunked'], ['chunked', 'chunked'], ['gzip,', 'chunked']])
    out.push(['request', `POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ${a}\r\nTransfer-Encoding: ${b}\r\n\r\n${chunkedBody}${next}`])
  // Empty values of the fields that frame a message or speak for its connection, before a body
  // that looks chunked and one that does not.
  for (const name of ['Content-Length', 'Transfer-Encoding', 'Connection', 'Proxy-Connection', 'Upgrade', 'Keep-Alive', 'Expect', 'TE', 'Trailer']) {
    for (const value of ['', ' ', '\t', ',', ' , ']) {
      for (const body of [chunkedBody, 'hello', '']) out.push(['request', `POST /e HTTP/1.1\r\nHost: t\r\n${name}:${value}\r\n\r\n${body}${next}`])
      out.push(['response', `HTTP/1.1 200 OK\r\n${name}:${value}\r\nContent-Length: 2\r\n\r\nok`])
    }
  }
  // Chunk extensions around the limit, in every shape Node counts: one long name, name=value
  // pairs (the `;` and `=` not counted), quoted values (the quotes counted), escapes; in one
  // chunk, or split over two.
  for (const total of [16_382, 16_383, 16_384, 16_385, 16_386, 20_000, 40_000]) {
    const shapes = [
      `;${'e'.repeat(total)}`,
      ';e=v'.repeat(Math.floor(total / 2)),
      `;e=${'v'.repeat(total - 1)}`,
      `;e="${'v'.repeat(total - 3)}"`,
      `;e="${'\\"'.repeat(Math.floor((total - 3) / 2))}"`,
      `;${'e'.repeat(total - 2)};e`,
    ]
    for (const ext of [...shapes, ...['=v', ';e', '=', '="q"', '', ';', 'e;', 'e=', 'e;=v', 'e==v', ' e'].map((odd) => `;${odd}${'e'.repeat(total - 8)}`)]) {
      out.push(['request', `POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1${ext}\r\nx\r\n0\r\n\r\n${next}`])
      // Split anywhere: inside a name, a value, a quoted string, or into an empty name (`1;=v`).
      const half = ext.length >> 1
      out.push(['request', `POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1${ext.slice(0, half)}\r\nx\r\n1;${ext.slice(half).replace(/^;/, '')}\r\ny\r\n0\r\n\r\n${next}`])
      out.push(['response', `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0${ext}\r\n\r\n`])
    }
  }
  // Trailers that speak for the connection or the framing, and harmless ones, with a request
  // pipelined behind, or many trailers (llhttp hands them over in batches of 32).
  for (const name of ['Connection', 'connection', 'Proxy-Connection', 'Content-Length', 'Transfer-Encoding', 'Upgrade', 'Keep-Alive', 'TE', 'Trailer', 'Host', 'X-Sum']) {
    for (const value of ['close', 'keep-alive', 'Upgrade', 'chunked', '5', '']) {
      const t = `${name}: ${value}\r\n`
      out.push(['request', `POST /tr HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${chunkedBody.slice(0, -2)}${t}\r\n${next}`])
      out.push(['request', `POST /tr HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n${'X-F: 1\r\n'.repeat(40)}${t}\r\n${next}`])
      out.push(['response', `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${chunkedBody.slice(0, -2)}${t}\r\n`])
    }
  }
  return out
}

describe('one answer per framing class on both parser paths (issue 21 item 12)', () => {
  before(function () {
    if (native.name !== 'native') this.skip()
  })

  it('serves and refuses each generated case alike on both paths, read whole and cut into random reads', function () {
    this.timeout(120_000)
    const random = seededRandom(20261207)
    const cases = framingClasses()
    const ends = { refused: 0, waiting: 0 }
    for (const [kind, text] of cases) {
      const bytes = Buffer.from(text, 'latin1')
      for (const cuts of [[], cutsFor(bytes.length, random)]) {
        const mine = verdict(portable, kind, bytes, cuts)
        const theirs = verdict(native, kind, bytes, cuts)
        const what = `${kind} ${JSON.stringify(text.length > 400 ? `${text.slice(0, 200)}…${text.slice(-200)}` : text)} cuts ${JSON.stringify(cuts)}`
        // An answer may be refused on the portable path where llhttp still reads it (a CR after a
        // status line, `chunked\t` read to the close): the upstream side answers 502 either
        // way, promptly on the portable path. A request gets one answer on both.
        if (kind === 'response' && mine.end === 'refused' && theirs.end === 'waiting') expect(theirs.served.slice(0, mine.served.length), what).to.deep.equal(mine.served)
        else expect(mine, what).to.deep.equal(theirs)
        ends[theirs.end]++
      }
    }
    // Both outcomes are common: the classes are neither all refused nor all taken.
    expect(ends.refused).to.be.above(cases.length / 4)
    expect(ends.waiting).to.be.above(cases.length / 4)
  })

  it('answers a CR that is not followed by LF at once, without waiting for more bytes', () => {
    for (const text of ['GET / HTTP/1.1\rX', 'GET /\r HTTP/1.1\r\n', 'GET / HTTP/1.1\r\nHost: t\rX', 'GET / HTTP/1.1\r\nHost: t\r\n\rX', 'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\rX']) {
      for (const engine of [native, portable]) {
        const bytes = Buffer.from(text, 'latin1')
        expect(verdict(engine, 'request', bytes, []).end, `${engine.name} ${JSON.stringify(text)}`).to.equal('refused')
        expect(verdict(engine, 'request', bytes, [bytes.length - 1]).end, `${engine.name} ${JSON.stringify(text)} in two reads`).to.equal('refused')
      }
    }
  })

  it('takes a Content-Length with leading zeros by its value, and refuses one past 2^53-1, on both paths', () => {
    const at = (cl: string) => Buffer.from(`POST /l HTTP/1.1\r\nHost: t\r\nContent-Length: ${cl}\r\n\r\nhello`, 'latin1')
    for (const engine of [native, portable]) {
      expect(verdict(engine, 'request', at('0000000000000000005'), []).served, engine.name).to.have.length(1)
      expect(verdict(engine, 'request', at('9007199254740992'), []).end, engine.name).to.equal('refused')
    }
  })
})
