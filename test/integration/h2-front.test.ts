// HTTP/2 toward clients (issue 26 §2): h2c with prior knowledge on the plain listener and h2 by
// ALPN on the TLS one, each stream routed, balanced and retried as an HTTP/1.1 request is, with the
// same forwarding headers, limits, error answers, access log and metrics (the protocol a field
// and a label); hostile header blocks refused before a byte goes upstream.

import { expect } from 'chai'
import { execFile } from 'node:child_process'
import http2 from 'node:http2'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import type http from 'node:http'
import type { AccessEntry } from '../../lib/log.js'
import { useCerts } from '../support/certs.js'
import { deadPort, makeConfig, metric, putNode, scrape, send, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'
import type { Upstream } from '../support/helpers.js'
import { DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PREFACE, RST_STREAM, SETTINGS, block, frame, frameReader } from '../support/h2-frames.js'
import { consumed } from '../support/wire.js'

interface H2Reply {
  status: number
  headers: http2.IncomingHttpHeaders
  body: string
  trailers: http2.IncomingHttpHeaders | null
}

/** One request on `session`; resolves with the whole answer. */
function request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string | Buffer): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'GET', ':path': '/', ...headers }, { endStream: body === undefined })
    let status = 0
    let got: http2.IncomingHttpHeaders = {}
    let trailers: http2.IncomingHttpHeaders | null = null
    const chunks: Buffer[] = []
    req.on('response', (h) => {
      status = Number(h[':status'])
      got = h
    })
    req.on('trailers', (t) => (trailers = t))
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve({ status, headers: got, body: Buffer.concat(chunks).toString(), trailers }))
    req.on('error', reject)
    if (body !== undefined) req.end(body)
  })
}

/** An upstream answering `name method body` with the body it read. */
const echo = (name: string) => (req: http.IncomingMessage, res: http.ServerResponse) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const answer = `${name} ${req.method ?? ''} ${Buffer.concat(chunks).toString()}`
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name, 'keep-alive': 'timeout=5' })
    res.end(answer)
  })
}

describe('HTTP/2 toward clients (real ZooKeeper, real upstreams)', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()
  const closers = useClosers()
  const certs = useCerts()

  async function upstream(name: string, handler: (req: http.IncomingMessage, res: http.ServerResponse) => void = echo(name)): Promise<Upstream> {
    const u = await startUpstream(name, handler)
    closers.push(() => u.close())
    return u
  }

  async function register(path: string, ports: number[]): Promise<void> {
    for (const port of ports) await putNode(ctx.admin, `${path}/i-${port}`, { host: '127.0.0.1', port })
  }

  async function proxy(path: string, opts: { service?: object; extra?: object; instances?: number; access?: AccessEntry[] } = {}) {
    const access = opts.access
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path, ...opts.service }], { log: { level: 'silent', access: access !== undefined }, ...opts.extra }), access === undefined ? {} : { accessLog: (e) => access.push(e) })
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length >= (opts.instances ?? 1), 'instances')
    return p
  }

  function h2c(port: number): http2.ClientHttp2Session {
    const s = http2.connect(`http://127.0.0.1:${port}`)
    s.on('error', () => {})
    closers.push(() => s.destroy())
    return s
  }

  function h2tls(port: number): http2.ClientHttp2Session {
    const s = http2.connect(`https://127.0.0.1:${port}`, { ca: certs.ca })
    s.on('error', () => {})
    closers.push(() => s.destroy())
    return s
  }

  const tlsConfig = (alpn?: string[]) => ({ tls: { cert: certs.cert, key: certs.key, ...(alpn === undefined ? {} : { alpn }) } })

  it('serves h2c with prior knowledge: GET and POST with bodies, with the forwarding headers an HTTP/1.1 request gets', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await register(path, [u.port])
    const p = await proxy(path)
    const s = h2c(p.port)
    const get = await request(s, { ':path': '/hello?x=1', 'x-request-id': 'req-h2c-1', 'user-agent': 'h2-test' })
    expect(get.status).to.equal(200)
    expect(get.body).to.equal('a GET ')
    expect(get.headers['x-upstream']).to.equal('a')
    // Connection-specific fields of the HTTP/1.1 answer never cross to an HTTP/2 client.
    expect(get.headers).to.not.have.property('keep-alive')
    expect(get.headers).to.not.have.property('connection')
    const body = 'x'.repeat(100_000)
    const post = await request(s, { ':method': 'POST', ':path': '/upload', 'content-type': 'text/plain' }, body)
    expect(post.status).to.equal(200)
    expect(post.body).to.equal(`a POST ${body}`)
    const seen = u.seen[0]!
    expect(seen.url).to.equal('/hello?x=1')
    expect(seen.headers).to.include({ host: `127.0.0.1:${p.port}`, 'x-forwarded-proto': 'http', 'x-forwarded-for': '127.0.0.1', 'x-forwarded-host': `127.0.0.1:${p.port}`, 'x-forwarded-port': String(p.port), via: '1.1 zoo-proxy', 'x-request-id': 'req-h2c-1', 'user-agent': 'h2-test' })
    expect(u.seen[1]!.headers['content-length']).to.equal(undefined === u.seen[1]!.headers['transfer-encoding'] ? String(body.length) : undefined)
  })

  it('serves h2 to a TLS client that chose it in ALPN, and HTTP/1.1 to one that did not, on the same port', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await register(path, [u.port])
    const p = await proxy(path, { extra: tlsConfig() })
    const s = h2tls(p.port)
    const get = await request(s, { ':path': '/secure' })
    expect(get.status).to.equal(200)
    expect((s.socket as tls.TLSSocket).alpnProtocol).to.equal('h2')
    const post = await request(s, { ':method': 'POST', ':path': '/secure' }, 'payload')
    expect(post.body).to.equal('a POST payload')
    expect(u.seen[0]!.headers['x-forwarded-proto']).to.equal('https')
    const h1 = await new Promise<number>((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: p.port, path: '/h1', ca: certs.ca, agent: false }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      }).on('error', reject)
    })
    expect(h1).to.equal(200)
    expect(u.seen.map((x) => x.url)).to.deep.equal(['/secure', '/secure', '/h1'])
  })

  it('spreads the streams of ONE client session over 3 instances by round-robin, each its share', async () => {
    const path = uniquePath()
    const ups = [await upstream('a'), await upstream('b'), await upstream('c')]
    await register(path, ups.map((u) => u.port))
    const p = await proxy(path, { instances: 3 })
    const s = h2c(p.port)
    const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => request(s, { ':path': `/r${i}` })))
    expect(replies.every((r) => r.status === 200)).to.equal(true)
    expect(ups.map((u) => u.hits)).to.deep.equal([10, 10, 10])
  })

  it('retries a stream on another instance when the first one is down', async () => {
    const path = uniquePath()
    const dead = await deadPort(closers)
    const u = await upstream('alive')
    await register(path, [dead, u.port])
    const p = await proxy(path, { instances: 2 })
    const s = h2c(p.port)
    for (let i = 0; i < 6; i++) {
      const r = await request(s, { ':method': 'POST', ':path': `/p${i}` }, `body ${i}`)
      expect(r.status, `request ${i}`).to.equal(200)
      expect(r.body).to.equal(`alive POST body ${i}`)
    }
    expect(u.hits).to.equal(6)
  })

  it('serves HTTP/1.1 clients on the h2c port as before, whatever their first read holds (one byte of a method, a whole request)', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await register(path, [u.port])
    const p = await proxy(path)
    expect((await send(p.port, '/plain')).status).to.equal(200)
    // First reads that are the preface's beginning and then differ from it: P, PR, PRI, "PRI * HTTP/1.1".
    for (const first of ['P', 'PR', 'PRI', 'PRI * HTTP/1']) {
      const method = first.startsWith('PRI') ? 'PRI' : 'POST'
      const whole = method === 'PRI' ? 'PRI * HTTP/1.1\r\nhost: x\r\n\r\n' : 'POST /split HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nok'
      const answer = await rawHttp(p.port, [whole.slice(0, first.length), whole.slice(first.length)])
      if (method === 'POST') expect(answer, first).to.match(/^HTTP\/1\.1 200 /)
      // PRI over HTTP/1.1: the h1 front's answer to a target that is not a path.
      else expect(answer, first).to.match(/^HTTP\/1\.1 400 /)
    }
    expect(u.seen.filter((x) => x.url === '/split')).to.have.length(2)
  })

  /** Writes `parts` as separate reads (each read by the proxy before the next), returns what came back. */
  async function rawHttp(port: number, parts: string[]): Promise<string> {
    const socket = net.connect(port, '127.0.0.1')
    closers.push(() => socket.destroy())
    await new Promise((r) => socket.once('connect', r))
    let got = ''
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')))
    socket.on('error', () => {})
    for (const [i, part] of parts.entries()) {
      socket.write(part)
      // Read by the proxy before the next part (after the last, the proxy may answer and close at once).
      if (i < parts.length - 1) await consumed(socket)
    }
    await waitFor(() => /\r\n\r\n/.test(got) && got, 'an answer')
    return got
  }

  it('takes the preface split over two reads', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await register(path, [u.port])
    const p = await proxy(path)
    const socket = net.connect(p.port, '127.0.0.1')
    closers.push(() => socket.destroy())
    await new Promise((r) => socket.once('connect', r))
    const reader = frameReader(socket)
    socket.write(PREFACE.subarray(0, 7))
    await consumed(socket)
    socket.write(Buffer.concat([PREFACE.subarray(7), frame(SETTINGS, 0, 0), frame(HEADERS, END_HEADERS | END_STREAM, 1, block([[':method', 'GET'], [':scheme', 'http'], [':path', '/split-preface'], [':authority', 'x']]))]))
    await waitFor(() => reader.frames.find((f) => f.streamId === 1 && f.type === DATA && (f.flags & END_STREAM) !== 0), 'the answer')
    expect(reader.frames.find((f) => f.streamId === 1 && f.type === HEADERS)!.payload[0]).to.equal(0x88) // :status 200, HPACK static index 8
    expect(u.seen.map((x) => x.url)).to.deep.equal(['/split-preface'])
  })

  it('with h2c: false, meets the preface with the HTTP/1.1 parser (400, as llhttp refuses the PRI line) and closes', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await register(path, [u.port])
    const p = await proxy(path, { extra: { h2c: false } })
    const socket = net.connect(p.port, '127.0.0.1')
    closers.push(() => socket.destroy())
    let got = ''
    let closed = false
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')))
    socket.on('close', () => (closed = true))
    socket.on('error', () => {})
    socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0)]))
    await waitFor(() => closed, 'the connection closed')
    expect(got.split('\r\n')[0]).to.equal(H2C_OFF_STATUS_LINE)
    expect(u.hits).to.equal(0)
    // A node:http2 client fails to get an answer at all.
    const s = http2.connect(`http://127.0.0.1:${p.port}`)
    const failed = await new Promise<boolean>((resolve) => {
      s.on('error', () => resolve(true))
      const req = s.request({ ':path': '/' })
      req.on('error', () => resolve(true))
      req.on('response', () => resolve(false))
    })
    s.destroy()
    expect(failed).to.equal(true)
  })

  it('with tls.alpn [http/1.1], refuses a client that offers h2 alone, and serves HTTP/1.1', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await register(path, [u.port])
    const p = await proxy(path, { extra: tlsConfig(['http/1.1']) })
    const refused = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: p.port, ca: certs.ca, ALPNProtocols: ['h2'], servername: 'localhost' })
      s.on('secureConnect', () => resolve(`connected with ${String(s.alpnProtocol)}`))
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
      closers.push(() => s.destroy())
    })
    expect(refused).to.match(/ALPN|NO_APPLICATION_PROTOCOL|alert number 120/i)
    const ok = await new Promise<string | false>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: p.port, ca: certs.ca, ALPNProtocols: ['h2', 'http/1.1'], servername: 'localhost' })
      s.on('secureConnect', () => resolve(s.alpnProtocol ?? false))
      s.on('error', () => resolve('error'))
      closers.push(() => s.destroy())
    })
    expect(ok).to.equal('http/1.1')
    expect(u.hits).to.equal(0)
  })

  // Each class of header block an HTTP/1.1 hop could be smuggled by: refused (a 4xx on the stream,
  // a stream reset, or the session ended) before a byte goes upstream, and the session's next
  // request (on a new session if that one ended) is the only one the instance sees.
  const base = (path = '/ok'): [string, string][] => [[':method', 'GET'], [':scheme', 'http'], [':path', path], [':authority', 'x.test']]
  // `dropped`: nghttp2 removes such a field before node:http2 hands the head over (the proxy never
  // sees it); the request is then served without it, and no byte of it goes upstream.
  const CLASSES: { name: string; fields: [string, string][]; body?: { length: string; data: string }; dropped?: true }[] = [
    ...['\r', '\n', '\0', '\r\n'].map((c) => ({ name: `a ${JSON.stringify(c)} in a value`, fields: [...base(), ['x-a', `v${c}x-b: smuggled`]] as [string, string][], dropped: true as const })),
    { name: 'a CR LF in :path', fields: [[':method', 'GET'], [':scheme', 'http'], [':path', '/a\r\nx: y'], [':authority', 'x.test']] },
    { name: 'an upper-case name', fields: [...base(), ['X-Upper', 'v']] },
    { name: 'a pseudo-header after a regular one', fields: [[':method', 'GET'], [':scheme', 'http'], ['x-a', 'v'], [':path', '/'], [':authority', 'x.test']] },
    { name: 'a repeated :path', fields: [...base(), [':path', '/twice']] as [string, string][] },
    { name: 'a repeated :method', fields: [[':method', 'GET'], [':method', 'POST'], [':scheme', 'http'], [':path', '/'], [':authority', 'x.test']] },
    { name: 'an unknown pseudo-header', fields: [...base(), [':foo', 'bar']] as [string, string][] },
    { name: 'a transfer-encoding header', fields: [...base(), ['transfer-encoding', 'chunked']] as [string, string][] },
    ...['connection', 'keep-alive', 'proxy-connection', 'upgrade'].map((n) => ({ name: `a ${n} header`, fields: [...base(), [n, n === 'connection' ? 'close' : 'x']] as [string, string][] })),
    { name: 'te other than trailers', fields: [...base(), ['te', 'gzip']] as [string, string][] },
    { name: ':authority and host that differ', fields: [...base(), ['host', 'other.test']] as [string, string][] },
    { name: 'no :path', fields: [[':method', 'GET'], [':scheme', 'http'], [':authority', 'x.test']] },
    { name: 'a body longer than its content-length', fields: [[':method', 'POST'], [':scheme', 'http'], [':path', '/'], [':authority', 'x.test'], ['content-length', '3']], body: { length: '3', data: 'hello' } },
    { name: 'a body shorter than its content-length', fields: [[':method', 'POST'], [':scheme', 'http'], [':path', '/'], [':authority', 'x.test'], ['content-length', '10']], body: { length: '10', data: 'abc' } },
    { name: 'two different content-length values', fields: [[':method', 'POST'], [':scheme', 'http'], [':path', '/'], [':authority', 'x.test'], ['content-length', '3'], ['content-length', '4']], body: { length: '3', data: 'abc' } },
  ]

  describe('refuses each smuggling class before a byte goes upstream', () => {
    for (const c of CLASSES) {
      it(`${c.dropped === true ? 'never forwards' : 'refuses'} ${c.name}`, async () => {
        const path = uniquePath()
        const u = await upstream('a')
        await register(path, [u.port])
        const access: AccessEntry[] = []
        const p = await proxy(path, { access })
        const before = u.hits
        const socket = net.connect(p.port, '127.0.0.1')
        closers.push(() => socket.destroy())
        await new Promise((r) => socket.once('connect', r))
        const reader = frameReader(socket)
        const frames = [PREFACE, frame(SETTINGS, 0, 0), frame(HEADERS, END_HEADERS | (c.body === undefined ? END_STREAM : 0), 1, block(c.fields))]
        if (c.body !== undefined) frames.push(frame(DATA, END_STREAM, 1, Buffer.from(c.body.data)))
        const logged = access.length
        socket.write(Buffer.concat(frames))
        const outcome = await waitFor(() => {
          const f = reader.frames.find((x) => (x.streamId === 1 && (x.type === RST_STREAM || (x.type === HEADERS && (x.flags & END_STREAM) !== 0) || x.type === DATA)) || x.type === GOAWAY)
          return f ?? (reader.ended() ? 'closed' : undefined)
        }, 'the stream refused')
        if (c.dropped === true) {
          await waitFor(() => u.hits > before, 'the request without the field')
          const seen = u.seen[u.seen.length - 1]!
          expect(seen.headers, c.name).to.not.have.any.keys('x-a', 'x-b')
          expect(JSON.stringify(seen.headers)).to.not.include('smuggled')
          expect(typeof outcome !== 'string' && outcome.type === GOAWAY).to.equal(false)
          return
        }
        if (typeof outcome !== 'string' && outcome.type !== RST_STREAM && outcome.type !== GOAWAY) {
          // Answered by the proxy: a 4xx in the access log, with the protocol.
          await waitFor(() => access.length > logged, 'the access line')
          const line = access[access.length - 1]!
          expect(line.status, `${c.name}: ${JSON.stringify(line)}`).to.be.within(400, 499)
          expect(line.protocol).to.equal('h2c')
        }
        // The next request, on a session of its own, is the only one the instance sees.
        const r = await request(h2c(p.port), { ':path': '/after' })
        expect(r.status).to.equal(200)
        expect(u.hits - before, c.name).to.equal(1)
        expect(u.seen[u.seen.length - 1]!.url).to.equal('/after')
      })
    }
  })

  it('refuses CONNECT with 405, and a header list over the head limit with 431', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await register(path, [u.port])
    const p = await proxy(path)
    const s = h2c(p.port)
    const connect = await request(s, { ':method': 'CONNECT', ':authority': 'example.test:443', ':path': undefined, ':scheme': undefined } as unknown as http2.OutgoingHttpHeaders)
    expect(connect.status).to.equal(405)
    const many: Record<string, string> = {}
    for (let i = 0; i < 101; i++) many[`x-h${i}`] = 'v'
    const tooMany = await request(s, { ':path': '/', ...many })
    expect(tooMany.status).to.equal(431)
    expect(JSON.parse(tooMany.body)).to.include({ error: 'ZP_ERR_HEADERS_TOO_LARGE' })
    expect(u.hits).to.equal(0)
  })

  it('answers the proxy-made 502, 503 and 504 as HTTP/2 responses with the JSON body HTTP/1.1 gets', async () => {
    const deadPath = uniquePath()
    const dead = await deadPort(closers)
    await register(deadPath, [dead])
    const slowPath = uniquePath()
    const slow = await upstream('slow', () => {})
    await register(slowPath, [slow.port])
    const emptyPath = uniquePath()
    await putNode(ctx.admin, emptyPath)
    const p = await startProxy(
      await makeConfig(ctx.zk.connectString, [
        { name: 'dead', path: deadPath, match: { pathPrefix: '/dead' } },
        { name: 'slow', path: slowPath, match: { pathPrefix: '/slow' }, timeoutMs: 300 },
        { name: 'empty', path: emptyPath, match: { pathPrefix: '/empty' } },
      ]),
    )
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length > 0 && p.services[1]!.balancer.hosts.length > 0, 'instances')
    const s = h2c(p.port)
    for (const [at, status, code] of [
      ['/dead', 502, 'ZP_ERR_UPSTREAM_CONNECT'],
      ['/empty', 503, 'ZP_ERR_NO_ENDPOINT'],
      ['/slow', 504, null],
    ] as const) {
      const r = await request(s, { ':path': at, 'x-request-id': `id-${status}` })
      const h1 = await send(p.port, at, { headers: { 'x-request-id': `id-${status}` } })
      expect(r.status, at).to.equal(status)
      expect(h1.status, at).to.equal(status)
      expect(r.headers['content-type']).to.equal('application/json')
      expect(r.headers['x-request-id']).to.equal(`id-${status}`)
      // The same body but for the milliseconds a deadline had left, which differ from request to request.
      const same = (body: string) => ({ ...(JSON.parse(body) as Record<string, unknown>), message: null })
      expect(same(r.body), at).to.deep.equal(same(h1.body))
      expect(JSON.parse(r.body).message).to.be.a('string').and.not.equal('')
      if (code !== null) expect(JSON.parse(r.body).error).to.equal(code)
    }
  })

  it('passes an HTTP/2 instance\'s trailers on to an HTTP/2 client', async () => {
    const server = http2.createServer()
    server.on('stream', (stream) => {
      stream.on('error', () => {})
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'fine' }))
      stream.end('payload')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    closers.push(() => new Promise<void>((r) => server.close(() => r())))
    const port = (server.address() as net.AddressInfo).port
    const path = uniquePath()
    await putNode(ctx.admin, `${path}/i-${port}`, { host: '127.0.0.1', port, protocol: 'h2c' })
    const p = await proxy(path)
    const r = await request(h2c(p.port), { ':method': 'POST', ':path': '/svc/Method', te: 'trailers', 'content-type': 'application/grpc' }, 'req')
    expect(r.status).to.equal(200)
    expect(r.body).to.equal('payload')
    expect(r.trailers).to.include({ 'grpc-status': '0', 'grpc-message': 'fine' })
  })

  it('ends only the session that broke the protocol, and passes a client\'s stream reset on to the instance', async () => {
    const path = uniquePath()
    let aborted = 0
    const u = await upstream('slow', (req) => req.on('close', () => aborted++))
    await register(path, [u.port])
    const p = await proxy(path)
    // A frame on stream 0 that may not be there (DATA): a connection error, GOAWAY, that session gone.
    const socket = net.connect(p.port, '127.0.0.1')
    closers.push(() => socket.destroy())
    await new Promise((r) => socket.once('connect', r))
    const reader = frameReader(socket)
    socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0), frame(DATA, 0, 0, Buffer.from('junk'))]))
    await waitFor(() => reader.frames.some((f) => f.type === GOAWAY) || reader.ended(), 'the broken session ended')
    // Another client is served; its stream, reset while the instance is slow, cancels the attempt.
    const s = h2c(p.port)
    const req = s.request({ ':path': '/slow' })
    req.on('error', () => {})
    await waitFor(() => u.hits === 1, 'the request upstream')
    req.close(http2.constants.NGHTTP2_CANCEL)
    await waitFor(() => aborted === 1, 'the upstream request aborted')
    u.handler = echo('fast')
    expect((await request(s, { ':path': '/next' })).body).to.equal('fast GET ')
  })

  it('advertises limits.maxConcurrentStreams and the HTTP/1.1 head limit in its SETTINGS', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await register(path, [u.port])
    for (const n of [1, 7, 100]) {
      const p = await proxy(path, { extra: { limits: { maxConcurrentStreams: n } } })
      const s = h2c(p.port)
      await new Promise((r) => s.once('remoteSettings', r))
      expect(s.remoteSettings).to.include({ maxConcurrentStreams: n, maxHeaderListSize: 16 * 1024, enablePush: false })
      expect((await request(s, { ':path': `/n${n}` })).status).to.equal(200)
    }
  })

  it('on shutdown, lets a stream in flight finish and sends the session a GOAWAY', async () => {
    const path = uniquePath()
    let answer: (() => void) | null = null
    const u = await upstream('a', (_req, res) => (answer = () => res.end('late')))
    await register(path, [u.port])
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path }]))
    await waitFor(() => p.services[0]!.balancer.hosts.length > 0, 'instances')
    const s = h2c(p.port)
    let goaway = false
    s.on('goaway', () => (goaway = true))
    const inFlight = request(s, { ':path': '/in-flight' })
    await waitFor(() => answer !== null, 'the request upstream')
    const closed = p.close()
    await waitFor(() => goaway, 'a GOAWAY')
    answer!()
    expect((await inFlight).body).to.equal('late')
    await closed
  })

  it('names the protocol in the access log and in zoo_proxy_client_requests_total', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await register(path, [u.port])
    const access: AccessEntry[] = []
    const p = await proxy(path, { access })
    await request(h2c(p.port), { ':path': '/one' })
    await request(h2c(p.port), { ':path': '/two' })
    await send(p.port, '/three')
    await waitFor(() => access.length === 3, 'three access lines')
    expect(access.map((e) => [e.path, e.protocol, e.status])).to.deep.equal([
      ['/one', 'h2c', 200],
      ['/two', 'h2c', 200],
      ['/three', 'http/1.1', 200],
    ])
    const text = await scrape(p.adminPort)
    expect(metric(text, 'zoo_proxy_client_requests_total{service="example",protocol="h2c"}')).to.equal(2)
    expect(metric(text, 'zoo_proxy_client_requests_total{service="example",protocol="http/1.1"}')).to.equal(1)
    expect(metric(text, 'zoo_proxy_requests_total{service="example",code="200"}')).to.equal(3)
  })

  it('holds an h2 request body to limits.maxBodyBytes (413) and clientBodyTimeoutMs (408)', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await register(path, [u.port])
    const p = await proxy(path, { extra: { limits: { maxBodyBytes: 1000 }, clientBodyTimeoutMs: 300 } })
    const s = h2c(p.port)
    const declared = await request(s, { ':method': 'POST', ':path': '/', 'content-length': '5000' }, 'x'.repeat(5000))
    expect(declared.status).to.equal(413)
    const streamed = await request(s, { ':method': 'POST', ':path': '/' }, 'x'.repeat(5000))
    expect(streamed.status).to.equal(413)
    // A body that stops coming: the stream stays open, nothing more is sent.
    const stalled = await new Promise<number>((resolve, reject) => {
      const req = s.request({ ':method': 'POST', ':path': '/' })
      req.write('start')
      req.on('response', (h) => resolve(Number(h[':status'])))
      req.on('error', reject)
    })
    expect(stalled).to.equal(408)
    expect(u.hits).to.equal(0)
  })

  it('serves curl over h2c (prior knowledge) and over TLS with ALPN h2', async function () {
    const has = await new Promise<boolean>((resolve) => execFile('curl', ['--version'], (err, out) => resolve(err === null && /HTTP2/.test(out))))
    if (!has) this.skip()
    const path = uniquePath()
    const u = await upstream('a')
    await register(path, [u.port])
    const plain = await proxy(path)
    const secure = await proxy(path, { extra: tlsConfig() })
    const curl = (args: string[]) => new Promise<string>((resolve, reject) => execFile('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_version} %{http_code}', ...args], (err, out) => (err === null ? resolve(out) : reject(err))))
    expect(await curl(['--http2-prior-knowledge', `http://127.0.0.1:${plain.port}/curl`])).to.equal('2 200')
    expect(await curl(['--http2', '--cacert', certs.caCert, `https://localhost:${secure.port}/curl`])).to.equal('2 200')
    expect(await curl(['--http1.1', `http://127.0.0.1:${plain.port}/curl`])).to.equal('1.1 200')
  })
})

/** What the HTTP/1.1 parser answers the preface with when h2c is off (docs/http2.md). */
const H2C_OFF_STATUS_LINE = 'HTTP/1.1 400 Bad Request'
