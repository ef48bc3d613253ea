import { expect } from 'chai'
import { rawHeader, responseHeaders } from '../../lib/forward.js'

const raw = (...pairs: string[]): Buffer[] => pairs.map((p) => Buffer.from(p, 'latin1'))

describe('response headers from the upstream', () => {
  it('lower-cases names, keeps repeats as arrays and drops hop-by-hop headers', () => {
    const out = responseHeaders(
      raw('Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked', 'X-Id', '7'),
    )
    expect(out).to.deep.equal({ 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'], 'x-id': '7' })
  })

  it('drops the headers a Connection header names', () => {
    const out = responseHeaders(raw('Connection', 'X-Secret, keep-alive', 'x-secret', 's', 'X-Kept', 'k', 'Connection', 'X-Other', 'X-Other', 'o'))
    expect(out).to.deep.equal({ 'x-kept': 'k' })
  })

  it('finds one header in the raw list whatever its case', () => {
    const list = raw('Content-Length', '2', 'Retry-After', '3')
    expect(rawHeader(list, 'retry-after')).to.equal('3')
    expect(rawHeader(list, 'x-missing')).to.equal(undefined)
  })
})
