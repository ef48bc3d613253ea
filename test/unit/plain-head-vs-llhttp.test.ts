// parsePlainHead must accept only what llhttp accepts, and read it the same way: fed thousands of
// mutated answer heads (seeded, so a failure repeats), every head it takes is also parsed by
// llhttp (Node's own parser, as the proxy runs it) to the same status, reason, length, keep-alive
// and end-to-end headers.

import { expect } from 'chai'
import { chooseEngine } from '../../lib/http/h1/engine.js'
import type { ParserEngine } from '../../lib/http/h1/engine.js'
import { framingProblem } from '../../lib/http/h1/framing.js'
import { HOP_BY_HOP, MAX_HEADER_BYTES, parsePlainHead } from '../../lib/http/h1/headers.js'
import { H1Parser } from '../../lib/http/h1/parser.js'
import { seededRandom } from '../support/random.js'

interface Parsed {
  status: number
  text: string
  length: number
  keepAlive: boolean
  headers: string[]
}

/**
 * llhttp's reading of the head in `bytes`, or null where llhttp refuses it; with `engine`, that
 * parser's reading, and null where the upstream side's framing rule (framingProblem) refuses it.
 */
function llhttp(bytes: Buffer, engine?: ParserEngine): Parsed | null {
  let got: Parsed | null = null
  const p = new H1Parser(
    'response',
    {
      onHead(_major, _minor, headers, _method, _url, status, text, _upgrade, keepAlive) {
        let length = -1
        const kept: string[] = []
        for (let i = 0; i < headers.length; i += 2) {
          const name = headers[i]!.toLowerCase()
          if (name === 'content-length') length = Number(headers[i + 1])
          // (The client gets the length as the proxy writes it, not as a header line passed on.)
          if (!HOP_BY_HOP.has(name) && name !== 'content-length') kept.push(name, headers[i + 1]!)
        }
        got = engine !== undefined && framingProblem(headers) !== null ? null : { status, text, length, keepAlive, headers: kept }
        return 0
      },
      onBody() {},
      onComplete() {},
    },
    MAX_HEADER_BYTES, // as the proxy's upstream side runs it
    engine,
  )
  // The head only: what follows is the body's business (bytes beyond a Content-Length are the
  // proxy's to refuse, by not reusing the connection).
  const end = bytes.indexOf('\r\n\r\n')
  const r = p.execute(end < 0 ? bytes : bytes.subarray(0, end + 4))
  p.close()
  return typeof r === 'number' ? got : null
}

/** parsePlainHead's reading, in the same shape, or null where it leaves the head to llhttp. */
function plain(bytes: Buffer): Parsed | null {
  const end = bytes.indexOf('\r\n\r\n')
  if (end < 0) return null
  const p = parsePlainHead(bytes, end + 4)
  if (p === null) return null
  const headers: string[] = []
  for (const line of p.head.lines.split('\r\n')) {
    if (line === '') continue
    const colon = line.indexOf(':')
    headers.push(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, ''))
  }
  return { status: p.head.status, text: p.head.text, length: p.contentLength, keepAlive: p.keepAlive, headers }
}

const BASES = [
  'HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 05:01:04 GMT\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok',
  'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\ncontent-length: 4\r\nKeep-Alive: timeout=5\r\n\r\nbusy',
  'HTTP/1.0 404 Not Found\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
]
/** Bytes that matter to framing and validation, and some that do not. */
const BYTES = [0x00, 0x09, 0x0a, 0x0d, 0x20, 0x3a, 0x2c, 0x7f, 0x80, 0xff, 0x30, 0x39, 0x41, 0x61, 0x2d, 0x22, 0x28]
const LINES = ['Content-Length: 2\r\n', 'Transfer-Encoding: chunked\r\n', 'Connection: close\r\n', 'Connection: upgrade\r\n', 'Upgrade: h2c\r\n', ' folded\r\n', 'X-A: b\r\n', 'Keep-Alive: timeout=1\r\n', 'TE: trailers\r\n']

function mutate(base: string, random: () => number): Buffer {
  const bytes = [...Buffer.from(base, 'latin1')]
  const edits = 1 + Math.floor(random() * 3)
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(random() * (bytes.length + 1))
    const what = random()
    if (what < 0.3) bytes.splice(at, 0, BYTES[Math.floor(random() * BYTES.length)]!)
    else if (what < 0.5) bytes.splice(at, 1)
    else if (what < 0.7) bytes[Math.min(at, bytes.length - 1)] = BYTES[Math.floor(random() * BYTES.length)]!
    else if (what < 0.78) {
      // A long line, its length around the head limit (llhttp counts fewer bytes than the whole
      // head: names and values, not ': ' or CRLF), or far beyond it.
      const starts = bytes.flatMap((b, i) => (b === 0x0a && i < base.indexOf('\r\n\r\n') + 2 ? [i + 1] : []))
      const n = random() < 0.8 ? MAX_HEADER_BYTES - 600 + Math.floor(random() * 1200) : 20_000 + Math.floor(random() * 30_000)
      bytes.splice(starts[Math.floor(random() * starts.length)] ?? at, 0, ...Buffer.from(`X-Long: ${'l'.repeat(n)}\r\n`, 'latin1'))
    } else if (what < 0.85) {
      // A whole line, at the start of some line of the head.
      const starts = bytes.flatMap((b, i) => (b === 0x0a && i < base.indexOf('\r\n\r\n') + 2 ? [i + 1] : []))
      const line = Buffer.from(LINES[Math.floor(random() * LINES.length)]!, 'latin1')
      bytes.splice(starts[Math.floor(random() * starts.length)] ?? at, 0, ...line)
    } else {
      const c = bytes[at]
      if (c !== undefined && ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a))) bytes[at] = c ^ 0x20
    }
  }
  return Buffer.from(bytes)
}

describe('the plain-head parser against llhttp', () => {
  it('leaves a head over the limit to llhttp whatever the read size, and llhttp refuses it', () => {
    const head = Buffer.from(`HTTP/1.1 200 OK\r\nX-Long: ${'l'.repeat(40 * 1024)}\r\nContent-Length: 2\r\n\r\n`, 'latin1')
    expect(plain(head)).to.equal(null)
    expect(llhttp(head)).to.equal(null)
  })

  it('takes every base head llhttp takes that is plain, and reads it alike', () => {
    for (const base of BASES) {
      const b = Buffer.from(base, 'latin1')
      const mine = plain(b)
      if (mine !== null) expect(mine).to.deep.equal(llhttp(b))
    }
    expect(plain(Buffer.from(BASES[0]!, 'latin1'))).to.not.equal(null)
  })

  it('accepts no mutated head that llhttp refuses, and reads the rest as llhttp does (20,000 seeded cases)', function () {
    // CPU-bound, about 10 s on an idle machine: more on a busy one.
    this.timeout(120_000)
    // Under Stryker (its workers carry STRYKER_MUTATOR_WORKER) the first 2,000 cases of the same
    // seed: every mutant of framing.ts reruns this test, and the whole sample, instrumented, ran
    // past its timeout (CONTRIBUTING.md, Mutation of the HTTP layer).
    const cases = process.env.STRYKER_MUTATOR_WORKER === undefined ? 20_000 : 2_000
    const random = seededRandom(20261126)
    let taken = 0
    let left = 0
    let long = 0
    for (let i = 0; i < cases; i++) {
      const bytes = mutate(BASES[i % BASES.length]!, random)
      const mine = plain(bytes)
      if (mine === null) {
        left++
        continue
      }
      taken++
      if (bytes.length > MAX_HEADER_BYTES - 600) long++
      const theirs = llhttp(bytes)
      expect(theirs, `llhttp refuses what parsePlainHead took: ${JSON.stringify(bytes.toString('latin1'))}`).to.not.equal(null)
      expect(mine, JSON.stringify(bytes.toString('latin1'))).to.deep.equal(theirs)
    }
    // Both kinds happen often enough for the test to mean something, long heads among them.
    expect(taken).to.be.above(cases / 10)
    expect(left).to.be.above(cases / 10)
    expect(long).to.be.above(cases / 200)
  })

  it('takes no head of the framing classes (bare CR, long digit runs, list-syntax Transfer-Encoding, empty framing values) that either parser path refuses, and reads the rest alike', () => {
    const native = chooseEngine(undefined)
    const portable = chooseEngine('portable')
    const heads: string[] = []
    const base = 'HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n'
    const end = base.length - 2
    // A CR inserted everywhere before the blank line, and each LF of the head turned into a CR.
    for (let i = 0; i < end; i++) {
      heads.push(base.slice(0, i) + '\r' + base.slice(i))
      if (base[i] === '\n') heads.push(base.slice(0, i) + '\r' + base.slice(i + 1))
    }
    for (const value of ['2', '02', '000000000000002', '0000000000000002', `${'0'.repeat(40)}2`, '999999999999999', '9007199254740991', '9007199254740992', '18446744073709551616', '2 ', ' 2'])
      heads.push(`HTTP/1.1 200 OK\r\nContent-Length: ${value}\r\n\r\n`)
    for (const te of ['chunked', ',chunked', 'chunked,', 'gzip,,chunked', 'chunked, gzip', '', ' ', 'Chunked'])
      heads.push(`HTTP/1.1 200 OK\r\nTransfer-Encoding:${te}\r\nContent-Length: 2\r\n\r\n`, `HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: ${te}\r\n\r\n`)
    for (const name of ['Content-Length', 'Transfer-Encoding', 'Connection', 'Keep-Alive', 'Upgrade'])
      for (const value of ['', ' ', '\t', ',']) heads.push(`HTTP/1.1 200 OK\r\n${name}:${value}\r\nContent-Length: 2\r\n\r\n`)
    let taken = 0
    for (const head of heads) {
      const bytes = Buffer.from(`${head}ok`, 'latin1')
      const mine = plain(bytes)
      if (mine === null) continue
      taken++
      expect(llhttp(bytes, native), `llhttp: ${JSON.stringify(head)}`).to.deep.equal(mine)
      expect(llhttp(bytes, portable), `portable: ${JSON.stringify(head)}`).to.deep.equal(mine)
    }
    expect(taken).to.be.above(5)
  })
})
