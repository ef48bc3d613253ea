// HTTP/2 <-> forwarding translation (issue 26 item 2), by classes of input: every pseudo-header
// in every wrong position, every connection-specific name, every forbidden byte in every place.

import { expect } from 'chai'
import { METHODS } from 'node:http'
import { UpstreamError } from '../../lib/errors.js'
import { MAX_HEADER_BYTES, ResponseHead } from '../../lib/http/h1/headers.js'
import { DEFAULT_LIMITS } from '../../lib/limits.js'
import {
  CONNECTION_SPECIFIC,
  DEFAULT_HEADER_LIMITS,
  h2RequestHeaders,
  h2ResponseHeaders,
  lengthMismatch,
  refusalError,
  translateRequest,
  translateResponse,
  translateTrailers,
} from '../../lib/http/h2/translate.js'
import type { Translated } from '../../lib/http/h2/translate.js'
import { modelFromResponseHead, responseHeadFromModel } from '../../lib/http/transport.js'

const PSEUDO = [':method', 'GET', ':scheme', 'https', ':path', '/a?b=1', ':authority', 'example.com']

function reason<T>(t: Translated<T>): string {
  return t.ok ? 'ok' : t.reason
}

function ok<T>(t: Translated<T>): T {
  if (!t.ok) throw new Error(`refused: ${t.reason}: ${t.message}`)
  return t.value
}

/** Every byte a value may not hold: NUL, CR, LF, the other controls but HTAB, DEL, and a char past 0xff. */
const BAD_VALUE_CHARS = [...Array.from({ length: 0x20 }, (_, c) => c).filter((c) => c !== 0x09), 0x7f, 0x100, 0x2028].map((c) => String.fromCharCode(c))

describe('HTTP/2 request -> forwarding request (RFC 9113 8.3.1)', () => {
  it('takes a well-formed request: pseudo-headers out, host first, fields in order', () => {
    const r = ok(translateRequest([...PSEUDO, 'accept', '*/*', 'x-id', '7', 'accept', 'text/html']))
    expect(r).to.deep.equal({
      method: 'GET',
      path: '/a?b=1',
      scheme: 'https',
      authority: 'example.com',
      headers: ['host', 'example.com', 'accept', '*/*', 'x-id', '7', 'accept', 'text/html'],
      contentLength: -1,
      trailers: false,
    })
  })

  it('names the authority from host when :authority is absent, and takes both when they agree in any case', () => {
    expect(ok(translateRequest([':method', 'GET', ':scheme', 'http', ':path', '/', 'host', 'h.example:8080'])).authority).to.equal('h.example:8080')
    expect(ok(translateRequest([...PSEUDO.slice(0, 6), ':authority', 'EXAMPLE.com', 'host', 'example.COM'])).headers.slice(0, 2)).to.deep.equal(['host', 'example.com'])
  })

  it('joins cookie crumbs with "; " into one field for the HTTP/1.1 hop (8.2.3)', () => {
    const r = ok(translateRequest([...PSEUDO, 'cookie', 'a=1', 'x', 'y', 'cookie', 'b=2', 'cookie', 'c=3']))
    expect(r.headers).to.deep.equal(['host', 'example.com', 'cookie', 'a=1; b=2; c=3', 'x', 'y'])
  })

  it('accepts te: trailers (any case) and notes it, and keeps a repeated equal content-length once', () => {
    const r = ok(translateRequest([...PSEUDO, 'te', 'Trailers', 'content-length', '12', 'content-length', '12']))
    expect(r.trailers).to.equal(true)
    expect(r.contentLength).to.equal(12)
    expect(r.headers).to.deep.equal(['host', 'example.com'])
  })

  for (const name of [':method', ':scheme', ':path']) {
    it(`refuses a request without ${name}`, () => {
      const raw: string[] = []
      for (let i = 0; i < PSEUDO.length; i += 2) if (PSEUDO[i] !== name) raw.push(PSEUDO[i]!, PSEUDO[i + 1]!)
      expect(reason(translateRequest(raw))).to.equal('pseudo-missing')
    })
  }

  for (let i = 0; i < PSEUDO.length; i += 2) {
    const name = PSEUDO[i]!
    const value = PSEUDO[i + 1]!
    it(`refuses ${name} repeated, whether or not the values agree`, () => {
      expect(reason(translateRequest([...PSEUDO, name, value]))).to.equal('pseudo-repeated')
      expect(reason(translateRequest([name, value, ...PSEUDO]))).to.equal('pseudo-repeated')
    })
    it(`refuses ${name} after a regular field`, () => {
      const rest: string[] = []
      for (let j = 0; j < PSEUDO.length; j += 2) if (j !== i) rest.push(PSEUDO[j]!, PSEUDO[j + 1]!)
      expect(reason(translateRequest([...rest, 'accept', '*/*', name, value]))).to.equal('pseudo-after-regular')
    })
  }

  for (const name of [':status', ':foo', ':', ':Method', ':protocol']) {
    it(`refuses the pseudo-header ${JSON.stringify(name)} in a request`, () => {
      expect(reason(translateRequest([...PSEUDO, name, 'x']))).to.equal('pseudo-unknown')
    })
  }

  it('refuses CONNECT, plain or extended (RFC 8441)', () => {
    expect(reason(translateRequest([':method', 'CONNECT', ':authority', 'example.com:443']))).to.equal('connect')
    expect(reason(translateRequest([':method', 'CONNECT', ':protocol', 'websocket', ':scheme', 'https', ':path', '/chat', ':authority', 'example.com']))).to.equal('connect')
  })

  for (const name of CONNECTION_SPECIFIC) {
    it(`refuses the connection-specific field ${name} (8.2.2), whatever its value`, () => {
      for (const value of ['close', 'chunked', 'keep-alive', 'h2c', 'x']) expect(reason(translateRequest([...PSEUDO, name, value]))).to.equal('connection-specific')
    })
  }

  it('refuses te with anything but trailers', () => {
    for (const value of ['gzip', 'trailers, deflate', 'deflate;q=0.5', 'trailer', 'x']) expect(reason(translateRequest([...PSEUDO, 'te', value])), value).to.equal('te-not-trailers')
  })

  it('refuses every forbidden character at the start, middle and end of a regular value and of a pseudo-header value', () => {
    for (const ch of BAD_VALUE_CHARS) {
      for (const value of [`${ch}v`, `a${ch}b`, `v${ch}`]) {
        const code = ch.charCodeAt(0).toString(16)
        expect(reason(translateRequest([...PSEUDO, 'x-a', value])), `0x${code} in ${JSON.stringify(value)}`).to.equal('invalid-value')
        expect(reason(translateRequest([':method', 'GET', ':scheme', 'https', ':path', `/${value}`, ':authority', 'a'])), `0x${code} in :path`).to.equal('invalid-value')
        expect(reason(translateRequest([':method', 'GET', ':scheme', 'https', ':path', '/', ':authority', value])), `0x${code} in :authority`).to.equal('invalid-value')
      }
    }
  })

  it('refuses a value that starts or ends with a space or a tab (8.2.1), and keeps one with them inside', () => {
    for (const value of [' v', 'v ', '\tv', 'v\t']) expect(reason(translateRequest([...PSEUDO, 'x-a', value]))).to.equal('invalid-value')
    expect(ok(translateRequest([...PSEUDO, 'x-a', 'a \tb', 'x-empty', ''])).headers).to.deep.equal(['host', 'example.com', 'x-a', 'a \tb', 'x-empty', ''])
  })

  it('refuses an upper-case letter anywhere in a name', () => {
    for (const name of ['X-a', 'x-A', 'ACCEPT', 'Host', 'Content-Length', 'Transfer-Encoding']) expect(reason(translateRequest([...PSEUDO, name, 'v'])), name).to.equal('uppercase-name')
  })

  it('refuses a name with any byte that is not a token character', () => {
    for (const name of ['', 'a b', 'a:b', 'a\tb', 'a\r\nb', 'a\0', '(x)', 'x,y', 'x/y', 'é', 'x\u0100', '"q"']) expect(reason(translateRequest([...PSEUDO, name, 'v'])), JSON.stringify(name)).to.equal('invalid-name')
  })

  it('holds the header list to the HTTP/1.1 head limit, counted as RFC 9113 counts it (name + value + 32)', () => {
    expect(DEFAULT_HEADER_LIMITS.maxHeaderListBytes).to.equal(MAX_HEADER_BYTES)
    let base = 0
    for (let i = 0; i < PSEUDO.length; i += 2) base += PSEUDO[i]!.length + PSEUDO[i + 1]!.length + 32
    const fill = (n: number) => [...PSEUDO, 'x-big', 'v'.repeat(n)]
    const room = MAX_HEADER_BYTES - base - 'x-big'.length - 32
    expect(reason(translateRequest(fill(room)))).to.equal('ok')
    expect(reason(translateRequest(fill(room + 1)))).to.equal('header-list-too-large')
    // Many small fields reach it as surely as one large one.
    const many = [...PSEUDO]
    while (many.length < 2000) many.push('x', 'y'.repeat(100))
    expect(reason(translateRequest(many, { maxHeaderListBytes: MAX_HEADER_BYTES, maxHeaders: 10_000 }))).to.equal('header-list-too-large')
  })

  it('holds the number of fields to limits.maxHeaders', () => {
    const at = [...PSEUDO]
    for (let i = 0; i < DEFAULT_LIMITS.maxHeaders; i++) at.push('x', '1')
    expect(reason(translateRequest(at))).to.equal('ok')
    expect(reason(translateRequest([...at, 'x', '1']))).to.equal('too-many-headers')
  })

  it('refuses a missing or disagreeing authority, and userinfo in it', () => {
    expect(reason(translateRequest([':method', 'GET', ':scheme', 'https', ':path', '/']))).to.equal('authority-missing')
    expect(reason(translateRequest([...PSEUDO, 'host', 'other.example']))).to.equal('authority-mismatch')
    expect(reason(translateRequest([...PSEUDO, 'host', 'example.com', 'host', 'example.com']))).to.equal('host-repeated')
    for (const a of ['user@example.com', 'a/b', 'a?b', 'a#b', 'a\\b', 'a b']) expect(reason(translateRequest([':method', 'GET', ':scheme', 'https', ':path', '/', ':authority', a])), a).to.equal('bad-authority')
  })

  it('refuses a scheme other than http and https, and a target an HTTP/1.1 request line cannot carry', () => {
    for (const s of ['ftp', 'HTTP', '', 'https:']) expect(reason(translateRequest([...PSEUDO.slice(0, 2), ':scheme', s, ...PSEUDO.slice(4)])), s).to.equal('bad-scheme')
    for (const p of ['', 'a', 'http://x/', '/a b', '/a#f', '*', '/\u00e9']) expect(reason(translateRequest([':method', 'GET', ':scheme', 'https', ':path', p, ':authority', 'a'])), p).to.be.oneOf(['bad-path', 'invalid-value'])
    expect(ok(translateRequest([':method', 'OPTIONS', ':scheme', 'https', ':path', '*', ':authority', 'a'])).path).to.equal('*')
  })

  it('refuses a method that is not a token', () => {
    for (const m of ['', 'G T', 'GET/', 'G\u00e9T']) expect(reason(translateRequest([':method', m, ':scheme', 'https', ':path', '/', ':authority', 'a'])), m).to.be.oneOf(['invalid-method', 'invalid-value'])
  })

  it('takes exactly the methods the HTTP/1.1 front takes (node:http METHODS, llhttp\'s), so an HTTP/1.1 instance never gets one its parser refuses', () => {
    for (const m of METHODS.filter((x) => x !== 'CONNECT')) expect(ok(translateRequest([':method', m, ':scheme', 'https', ':path', m === 'OPTIONS' ? '*' : '/', ':authority', 'a'])).method, m).to.equal(m)
    // Tokens all, but not registered: a flipped bit (the h2 fuzz family's GDT), case, made up.
    for (const m of ['GDT', 'get', 'Get', 'FOO', 'GETS', 'XGET', 'PATCHX', 'M-SEARCHX']) expect(reason(translateRequest([':method', m, ':scheme', 'https', ':path', '/', ':authority', 'a'])), m).to.equal('invalid-method')
  })

  it('refuses a content-length that is not 1 to 15 digits, or two that differ', () => {
    for (const v of ['', '-1', '+1', '1.0', '0x10', '1 2', '1234567890123456', 'ten']) expect(reason(translateRequest([...PSEUDO, 'content-length', v])), v).to.be.oneOf(['content-length-invalid', 'invalid-value'])
    expect(reason(translateRequest([...PSEUDO, 'content-length', '1', 'content-length', '2']))).to.equal('content-length-invalid')
  })

  it('maps a refusal to 400 when the client sent it and to a 502-class upstream error when the instance did', () => {
    const r = translateRequest([...PSEUDO, 'connection', 'close'])
    if (r.ok) throw new Error('accepted')
    const client = refusalError(r, 'client')
    expect([client.code, client.statusCode]).to.deep.equal(['ZP_ERR_BAD_REQUEST', 400])
    const instance = refusalError(r, 'instance')
    expect(instance).to.be.instanceOf(UpstreamError)
    expect([instance.code, instance.statusCode, (instance as UpstreamError).kind]).to.deep.equal(['ZP_ERR_UPSTREAM_RESET', 502, 'reset'])
  })
})

describe('HTTP/2 response -> HTTP/1.1 head', () => {
  it('gives a ResponseHead the HTTP/1.1 writer takes as it is: standard reason, lines, the length apart', () => {
    const { head, model } = ok(translateResponse([':status', '404', 'content-type', 'text/plain', 'content-length', '5', 'set-cookie', 'a=1', 'set-cookie', 'b=2']))
    expect(head).to.be.instanceOf(ResponseHead)
    expect([head.status, head.text, head.contentLength]).to.deep.equal([404, 'Not Found', 5])
    expect(head.lines).to.equal('content-type: text/plain\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n')
    expect(head.header('content-type')).to.equal('text/plain')
    expect(model).to.deep.equal({ status: 404, headers: ['content-type', 'text/plain', 'set-cookie', 'a=1', 'set-cookie', 'b=2'], contentLength: 5 })
  })

  it('drops the hop-by-hop fields that are not malformed in HTTP/2 (trailer, te)', () => {
    expect(ok(translateResponse([':status', '200', 'trailer', 'grpc-status', 'te', 'trailers', 'x', '1'])).model.headers).to.deep.equal(['x', '1'])
  })

  it('refuses a missing, repeated, late, non-three-digit or interim :status, and request pseudo-headers', () => {
    expect(reason(translateResponse(['x', '1']))).to.equal('pseudo-missing')
    expect(reason(translateResponse([':status', '200', ':status', '200']))).to.equal('pseudo-repeated')
    expect(reason(translateResponse(['x', '1', ':status', '200']))).to.equal('pseudo-after-regular')
    for (const s of ['', '20', '2000', '2x0', ' 200', '-20']) expect(reason(translateResponse([':status', s])), s).to.be.oneOf(['bad-status', 'invalid-value'])
    for (const s of ['100', '101', '103', '199', '000', '099']) expect(reason(translateResponse([':status', s])), s).to.equal('bad-status')
    for (const p of [':method', ':path', ':authority', ':scheme', ':x']) expect(reason(translateResponse([':status', '200', p, 'v'])), p).to.equal('pseudo-unknown')
  })

  it('refuses connection-specific fields, bad names and bad values from the instance as it does from a client', () => {
    for (const name of CONNECTION_SPECIFIC) expect(reason(translateResponse([':status', '200', name, 'x']))).to.equal('connection-specific')
    for (const ch of BAD_VALUE_CHARS) expect(reason(translateResponse([':status', '200', 'x', `a${ch}b`]))).to.equal('invalid-value')
    expect(reason(translateResponse([':status', '200', 'X-Up', '1']))).to.equal('uppercase-name')
    expect(reason(translateResponse([':status', '200', 'content-length', '1', 'content-length', '2']))).to.equal('content-length-invalid')
  })

  it('holds the instance to the same header list size', () => {
    expect(reason(translateResponse([':status', '200', 'x', 'v'.repeat(MAX_HEADER_BYTES)]))).to.equal('header-list-too-large')
  })
})

describe('HTTP/1.1 head -> HTTP/2 response block, and the model between them', () => {
  it('lower-cases names, drops hop-by-hop fields and writes the length from the framing number', () => {
    const head = ResponseHead.fromRaw(200, 'OK', ['Content-Type', 'text/plain', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'Content-Length', '2', 'X-Id', '7'])
    const model = modelFromResponseHead(head)
    expect(model).to.deep.equal({ status: 200, headers: ['Content-Type', 'text/plain', 'X-Id', '7'], contentLength: 2 })
    expect(ok(h2ResponseHeaders(model))).to.deep.equal([':status', '200', 'content-type', 'text/plain', 'x-id', '7', 'content-length', '2'])
  })

  it('drops every hop-by-hop field a model may still carry, and writes no length for 204 and 304', () => {
    const headers = ['Transfer-Encoding', 'chunked', 'Upgrade', 'h2c', 'TE', 'trailers', 'Trailer', 'x', 'Proxy-Connection', 'close', 'Content-Length', '9', 'a', 'b']
    expect(ok(h2ResponseHeaders({ status: 200, headers, contentLength: -1 }))).to.deep.equal([':status', '200', 'a', 'b'])
    for (const status of [204, 304]) expect(ok(h2ResponseHeaders({ status, headers: [], contentLength: 0 }))).to.deep.equal([':status', String(status)])
  })

  it('refuses what no HTTP/2 peer may get: an interim or out-of-range status, a forbidden character', () => {
    for (const status of [100, 101, 199, 1000, -1, 200.5]) expect(reason(h2ResponseHeaders({ status, headers: [], contentLength: -1 })), String(status)).to.equal('bad-status')
    for (const ch of BAD_VALUE_CHARS) expect(reason(h2ResponseHeaders({ status: 200, headers: ['x', `a${ch}`], contentLength: -1 }))).to.equal('invalid-value')
    expect(reason(h2ResponseHeaders({ status: 200, headers: ['a b', 'x'], contentLength: -1 }))).to.equal('invalid-name')
  })

  it('goes HTTP/1.1 -> HTTP/2 -> HTTP/1.1 without losing an end-to-end field', () => {
    const model = { status: 201, headers: ['location', '/x', 'set-cookie', 'a=1', 'set-cookie', 'b=2'], contentLength: 0 }
    const back = ok(translateResponse(ok(h2ResponseHeaders(model)))).model
    expect(back).to.deep.equal(model)
    const head = responseHeadFromModel(model)
    expect([head.status, head.text, head.lines, head.contentLength]).to.deep.equal([201, 'Created', 'location: /x\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n', 0])
  })
})

describe('trailers', () => {
  it('pass with their fields, less those that frame, route or are hop-by-hop', () => {
    expect(ok(translateTrailers(['grpc-status', '0', 'content-length', '3', 'host', 'x', 'trailer', 'y', 'x-sum', 'abc']))).to.deep.equal(['grpc-status', '0', 'x-sum', 'abc'])
  })

  it('refuse pseudo-headers, connection-specific fields and bad bytes', () => {
    expect(reason(translateTrailers([':status', '200']))).to.equal('pseudo-in-trailers')
    for (const name of CONNECTION_SPECIFIC) expect(reason(translateTrailers([name, 'x']))).to.equal('connection-specific')
    for (const ch of BAD_VALUE_CHARS) expect(reason(translateTrailers(['x', `a${ch}b`]))).to.equal('invalid-value')
    expect(reason(translateTrailers(['x', 'v'.repeat(MAX_HEADER_BYTES)]))).to.equal('header-list-too-large')
  })
})

describe('forwarding request -> HTTP/2 request block', () => {
  it('folds Host into :authority, lower-cases names, keeps repeats, drops hop-by-hop fields but te: trailers', () => {
    const h = ok(h2RequestHeaders('POST', '/p', ['Host', 'svc.example', 'X-A', '1', 'x-a', '2', 'Connection', 'close', 'Keep-Alive', '5', 'Upgrade', 'h2c', 'TE', 'trailers', 'Content-Length', '3', 'Via', '1.1 zoo-proxy'], 'https', 'inst:443'))
    expect({ ...h }).to.deep.equal({ ':method': 'POST', ':scheme': 'https', ':path': '/p', 'x-a': ['1', '2'], te: 'trailers', via: '1.1 zoo-proxy', ':authority': 'svc.example' })
  })

  it("names the instance when the request has no Host, and drops a te that is not trailers", () => {
    const h = ok(h2RequestHeaders('GET', '/', ['te', 'gzip'], 'http', '127.0.0.1:8080'))
    expect({ ...h }).to.deep.equal({ ':method': 'GET', ':scheme': 'http', ':path': '/', ':authority': '127.0.0.1:8080' })
  })

  it('refuses CONNECT, a bad method or target, and a bad name or value', () => {
    expect(reason(h2RequestHeaders('CONNECT', '/', [], 'http', 'a'))).to.equal('connect')
    expect(reason(h2RequestHeaders('G T', '/', [], 'http', 'a'))).to.equal('invalid-method')
    expect(reason(h2RequestHeaders('GET', 'x', [], 'http', 'a'))).to.equal('bad-path')
    expect(reason(h2RequestHeaders('GET', '/', ['a b', 'x'], 'http', 'a'))).to.equal('invalid-name')
    for (const ch of BAD_VALUE_CHARS) expect(reason(h2RequestHeaders('GET', '/', ['x', `a${ch}b`], 'http', 'a'))).to.equal('invalid-value')
    expect(reason(h2RequestHeaders('GET', '/', ['host', 'u@h'], 'http', 'a'))).to.equal('bad-authority')
  })
})

describe('content-length against DATA (RFC 9113 8.1.1)', () => {
  it('says over as soon as more came than declared, under only at the end, and nothing without a length', () => {
    const cases: [number, number, boolean, 'over' | 'under' | null][] = [
      [-1, 0, true, null],
      [-1, 1e9, true, null],
      [0, 0, true, null],
      [0, 1, false, 'over'],
      [5, 4, false, null],
      [5, 4, true, 'under'],
      [5, 5, true, null],
      [5, 5, false, null],
      [5, 6, false, 'over'],
      [5, 6, true, 'over'],
      [5, 0, true, 'under'],
    ]
    for (const [declared, received, ended, want] of cases) expect(lengthMismatch(declared, received, ended), `${declared}/${received}/${ended}`).to.equal(want)
  })
})
