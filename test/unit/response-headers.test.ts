import { expect } from 'chai'
import { rawHeader, responseLines } from '../../lib/h1/headers.js'

const raw = (...pairs: string[]): string[] => pairs

describe('response headers from the upstream', () => {
  it('keeps names as sent, repeats in order, and drops hop-by-hop headers', () => {
    const out = responseLines(
      raw('Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked', 'X-Id', '7'),
    )
    expect(out).to.deep.equal({ lines: 'Content-Type: text/plain\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nX-Id: 7\r\n', length: false })
  })

  it('notes a Content-Length, which decides the framing toward the client', () => {
    expect(responseLines(raw('Content-Length', '2')).length).to.equal(true)
  })

  it('drops the headers a Connection header names', () => {
    const out = responseLines(raw('Connection', 'X-Secret, keep-alive', 'x-secret', 's', 'X-Kept', 'k', 'Connection', 'X-Other', 'X-Other', 'o'))
    expect(out.lines).to.equal('X-Kept: k\r\n')
  })

  it('finds one header in the raw list whatever its case', () => {
    const list = raw('Content-Length', '2', 'Retry-After', '3')
    expect(rawHeader(list, 'retry-after')).to.equal('3')
    expect(rawHeader(list, 'x-missing')).to.equal(undefined)
  })
})
