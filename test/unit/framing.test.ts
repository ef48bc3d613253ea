// The framing rules the native path applies to what llhttp took (framing.ts), asked directly
// (issue 22, the Stryker run over the HTTP layer): the parser comparisons reach them only through
// heads llhttp or the plain-head parser already refuse, so a broken rule there went unnoticed.

import { expect } from 'chai'
import { MAX_CONTENT_LENGTH, framingProblem, refusedInTrailers, trailerProblem, transferCodings } from '../../lib/http/h1/framing.js'

const EMPTY = 'Transfer-Encoding has an empty or malformed element'
const AFTER = 'Transfer-Encoding has a coding after chunked'

describe('the framing rules', () => {
  it('reads a Transfer-Encoding list with SP around its elements, and refuses an empty or non-token element', () => {
    const cases: [string, string[] | null][] = [
      ['chunked', ['chunked']],
      [' chunked', ['chunked']],
      ['chunked ', ['chunked']],
      ['  gzip ,  chunked  ', ['gzip', 'chunked']],
      ['x', ['x']],
      ['', null],
      ['   ', null],
      [',chunked', null],
      ['chunked,', null],
      ['gzip,,chunked', null],
      ['gzip, ,chunked', null],
      ['chu nked', null],
      ['\tchunked', null],
      ['chunked\t', null],
      ['"chunked"', null],
    ]
    for (const [value, codings] of cases) expect(transferCodings(value), JSON.stringify(value)).to.deep.equal(codings)
  })

  it('refuses a coding after chunked, in one field or across several, whatever its case', () => {
    const cases: [string[], string | null][] = [
      [['Transfer-Encoding', 'gzip, chunked'], null],
      [['Transfer-Encoding', 'chunked, gzip'], AFTER],
      [['transfer-encoding', 'CHUNKED, gzip'], AFTER],
      [['Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'gzip'], AFTER],
      [['Transfer-Encoding', 'gzip', 'Transfer-Encoding', 'chunked'], null],
      [['Transfer-Encoding', 'chunkedx, gzip'], null],
      [['Transfer-Encoding', 'xhunked, gzip'], null],
      [['Transfer-Encoding', ',chunked'], EMPTY],
      [['TRANSFER-ENCODING', 'a,,b'], EMPTY],
      // Look-alikes are other fields: of the same length, or with the name inside.
      [['Transfer-Encodinx', ',chunked'], null],
      [['X-Transfer-Encoding', ',chunked'], null],
      [['Transfer-Encodinx', 'chunked', 'Transfer-Encoding', 'gzip'], null],
    ]
    for (const [raw, problem] of cases) expect(framingProblem(raw), JSON.stringify(raw)).to.equal(problem)
  })

  it(`refuses a Content-Length past ${MAX_CONTENT_LENGTH} or not a number, and only in a Content-Length field`, () => {
    const over = `Content-Length over ${MAX_CONTENT_LENGTH}`
    const cases: [string[], string | null][] = [
      [['Content-Length', '0'], null],
      [['Content-Length', String(MAX_CONTENT_LENGTH)], null],
      [['content-length', '000000000000000000009007199254740991'], null],
      [['Content-Length', '9007199254740992'], over],
      [['CONTENT-LENGTH', '18446744073709551616'], over],
      [['Content-Length', 'x'], over],
      [['Content-Lengtx', '9007199254740992'], null],
      [['X-Content-Length', '9007199254740992'], null],
      [['Content-Lengtx', 'x', 'Content-Length', '2'], null],
    ]
    for (const [raw, problem] of cases) expect(framingProblem(raw), JSON.stringify(raw)).to.equal(problem)
  })

  it('refuses the framing and connection fields in a trailer section, and only those', () => {
    for (const name of ['content-length', 'transfer-encoding', 'connection', 'proxy-connection', 'upgrade', 'keep-alive']) {
      expect(refusedInTrailers(name), name).to.equal(true)
      expect(trailerProblem(['x-a', '1', name.toUpperCase(), 'v']), name).to.equal(name)
    }
    for (const name of ['x-checksum', 'server-timing', 'content-lengt', 'te']) expect(refusedInTrailers(name), name).to.equal(false)
    expect(trailerProblem(['x-a', '1', 'server-timing', 'x'])).to.equal(null)
    expect(trailerProblem([])).to.equal(null)
  })
})
