import { expect } from 'chai'
import { upstreamHeaders } from '../../lib/http/forward.js'
import type { Exchange } from '../../lib/http/h1/exchange.js'
import { parsePlainHead, rawHeader, responseLines } from '../../lib/http/h1/headers.js'

const raw = (...pairs: string[]): string[] => pairs

describe('response headers from the upstream', () => {
  it('keeps names as sent, repeats in order, and drops hop-by-hop headers', () => {
    const out = responseLines(
      raw('Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked', 'X-Id', '7'),
    )
    expect(out).to.deep.equal({ lines: 'Content-Type: text/plain\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nX-Id: 7\r\n', contentLength: -1 })
  })

  it('takes a Content-Length out of the lines and keeps its number, which frames the answer toward the client', () => {
    expect(responseLines(raw('Content-Length', '002', 'X-A', 'b'))).to.deep.equal({ lines: 'X-A: b\r\n', contentLength: 2 })
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

describe('plain answer heads parsed without llhttp', () => {
  const parse = (head: string) => {
    const buf = Buffer.from(head + 'body', 'latin1')
    return parsePlainHead(buf, buf.indexOf('\r\n\r\n') + 4)
  }

  it('reads status, reason, length and keep-alive, and cuts hop-by-hop lines out', () => {
    const p = parse('HTTP/1.1 200 OK\r\nServer: t\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 4\r\nX-Id: 7\r\n\r\n')!
    expect(p).to.not.equal(null)
    expect([p.head.status, p.head.text, p.contentLength, p.keepAlive, p.keepAliveTimeoutS]).to.deep.equal([200, 'OK', 4, true, 5])
    expect(p.head.lines).to.equal('Server: t\r\nX-Id: 7\r\n')
    expect(p.head.contentLength).to.equal(4)
    expect(p.head.header('x-id')).to.equal('7')
  })

  it('takes keep-alive from the version and Connection as llhttp does', () => {
    expect(parse('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')!.keepAlive).to.equal(true)
    expect(parse('HTTP/1.1 200 OK\r\nconnection: close\r\nContent-Length: 0\r\n\r\n')!.keepAlive).to.equal(false)
    expect(parse('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n')!.keepAlive).to.equal(false)
    expect(parse('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n')!.keepAlive).to.equal(true)
  })

  it('keeps any reason phrase and trims optional whitespace around values', () => {
    const p = parse('HTTP/1.1 503 Service Unavailable\r\nRetry-After:  3 \t\r\nContent-Length:\t12\r\n\r\n')!
    expect(p.head.text).to.equal('Service Unavailable')
    expect(p.contentLength).to.equal(12)
    expect(p.head.header('retry-after')).to.equal('3')
  })

  for (const [why, head] of [
    ['no Content-Length (chunked or close-delimited)', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['a Transfer-Encoding beside the Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['two Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n'],
    ['a Content-Length that is not digits', 'HTTP/1.1 200 OK\r\nContent-Length: 4x\r\n\r\n'],
    ['a Content-Length too long to be exact', 'HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999\r\n\r\n'],
    ['a 1xx answer', 'HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\n\r\n'],
    ['a 204', 'HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n'],
    ['a 304', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 4\r\n\r\n'],
    ['HTTP/2 in the status line', 'HTTP/2.0 200 OK\r\nContent-Length: 4\r\n\r\n'],
    ['a two-digit status', 'HTTP/1.1 20 OK\r\nContent-Length: 4\r\n\r\n'],
    ['a folded line', 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 4\r\n\r\n'],
    ['space before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 4\r\n\r\n'],
    ['a bare LF', 'HTTP/1.1 200 OK\nContent-Length: 4\r\n\r\n'],
    ['a control byte in a value', 'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 4\r\n\r\n'],
    // These three were found by test/unit/plain-head-vs-llhttp.test.ts.
    ['whitespace after the Content-Length (llhttp refuses a tab there)', 'HTTP/1.1 200 OK\r\nContent-Length: 4\t\r\n\r\n'],
    ['two Connection headers (close and keep-alive)', 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\n'],
    ['Connection: keep-alive with a tab after it', 'HTTP/1.0 200 OK\r\nConnection: keep-alive\t\r\nContent-Length: 4\r\n\r\n'],
    ['Connection naming another header', 'HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: s\r\nContent-Length: 4\r\n\r\n'],
    ['an Upgrade header', 'HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 4\r\n\r\n'],
  ]) {
    it(`leaves ${why} to llhttp`, () => {
      expect(parse(head!)).to.equal(null)
    })
  }
})

describe('request headers to the upstream', () => {
  const from = (rawHeaders: string[], connection?: string) =>
    upstreamHeaders({ rawHeaders, connection, remoteAddress: '10.0.0.9', host: 'h.test', requestId: 'rid-1', localPort: 8080 } as unknown as Exchange)

  it('passes end-to-end headers as sent, drops hop-by-hop ones, and sets X-Forwarded-* and Via', () => {
    const out = from(['Host', 'h.test', 'Keep-Alive', 'timeout=5', 'TE', 'trailers', 'Proxy-Connection', 'x', 'Accept', '*/*', 'X-Forwarded-Proto', 'https', 'X-Forwarded-For', '1.2.3.4', 'x-forwarded-host', 'evil', 'X-Forwarded-Port', '443'])
    expect(out).to.deep.equal(['Host', 'h.test', 'Accept', '*/*', 'x-forwarded-for', '1.2.3.4, 10.0.0.9', 'x-forwarded-proto', 'http', 'x-forwarded-port', '8080', 'x-forwarded-host', 'h.test', 'via', '1.1 zoo-proxy', 'x-request-id', 'rid-1'])
  })

  it('drops the headers the client named in Connection, whatever their length', () => {
    expect(from(['Connection', 'X-Hop, keep-alive', 'X-Hop', '1', 'Accept', '*/*'], 'X-Hop, keep-alive').slice(0, 2)).to.deep.equal(['Accept', '*/*'])
  })

  it('never passes the framing a client sent: Content-Length and Transfer-Encoding, whatever their case', () => {
    const out = from(['content-LENGTH', '039', 'Transfer-Encoding', 'chunked', 'Accept', '*/*'])
    expect(out.slice(0, 2)).to.deep.equal(['Accept', '*/*'])
    expect(out.map((h) => h.toLowerCase())).not.to.include.members(['content-length', 'transfer-encoding'])
  })

  it('drops every header name with an underscore (framing look-alikes), unless told to keep them', () => {
    const raw = ['Transfer_Encoding', 'chunked', 'Content_Length', '39', 'X_Custom', '1', 'Accept', '*/*']
    expect(from(raw).filter((_, i) => i % 2 === 0)).to.deep.equal(['Accept', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-port', 'x-forwarded-host', 'via', 'x-request-id'])
    const kept = upstreamHeaders({ rawHeaders: raw, remoteAddress: '10.0.0.9', host: 'h.test', requestId: 'rid-1' } as unknown as Exchange, true)
    expect(kept.slice(0, 6)).to.deep.equal(['Transfer_Encoding', 'chunked', 'Content_Length', '39', 'X_Custom', '1'])
  })

  it('never lets Connection take away the Host', () => {
    for (const c of ['host', 'Host, keep-alive', 'close, HOST'])
      expect(from(['Host', 'h.test', 'Connection', c], c).slice(0, 2)).to.deep.equal(['Host', 'h.test'])
  })

  it('adds its Via after one the client sent', () => {
    expect(from(['Via', '1.0 fred']).filter((_, i) => i % 2 === 1)).to.deep.equal(['1.0 fred', '10.0.0.9', 'http', '8080', 'h.test', '1.1 zoo-proxy', 'rid-1'])
  })
})
