// gRPC through the proxy (issue 27), the parts on the HTTP/1.1 front: gRPC-Web (binary and text)
// from a client to real @grpc/grpc-js servers reached over h2c, found in real ZooKeeper; unary and
// server-streaming; every status the proxy makes itself, in gRPC's terms; grpc-timeout as the
// call's deadline; UNAVAILABLE retried on another instance; the metric and the access log.

import { Buffer } from 'node:buffer'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import * as grpc from '@grpc/grpc-js'
import { expect } from 'chai'
import { instanceState } from '../../lib/balancing/instance-state.js'
import type { AccessEntry } from '../../lib/log.js'
import { deadPort, makeConfig, metric, putNode, scrape, send, startProxy, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'
import type { Reply } from '../support/helpers.js'

const raw = {
  serialize: (b: Buffer): Buffer => b,
  deserialize: (b: Buffer): Buffer => b,
}

/** A service definition without a .proto: messages are raw bytes, each method named by its path. */
const ECHO: grpc.ServiceDefinition = {
  Unary: { path: '/test.Echo/Unary', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  Stream: { path: '/test.Echo/Stream', requestStream: false, responseStream: true, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
}

interface Instance {
  readonly port: number
  /** `leftMs`: the time the instance's deadline gave it, from the grpc-timeout it got (Infinity: none). */
  readonly calls: { path: string; body: string; leftMs: number }[]
}

/** One gRPC-Web frame (flag 0: a message). */
function frame(message: string | Buffer): Buffer {
  const body = typeof message === 'string' ? Buffer.from(message) : message
  const out = Buffer.alloc(5 + body.length)
  out.writeUInt32BE(body.length, 1)
  body.copy(out, 5)
  return out
}

/** A gRPC-Web answer's body as its messages and its trailer frame's fields. */
function frames(body: Buffer): { messages: string[]; trailers: Record<string, string> | null } {
  const messages: string[] = []
  let trailers: Record<string, string> | null = null
  let at = 0
  while (at + 5 <= body.length) {
    const flag = body[at]!
    const len = body.readUInt32BE(at + 1)
    const data = body.subarray(at + 5, at + 5 + len)
    at += 5 + len
    if ((flag & 0x80) === 0) messages.push(data.toString())
    else {
      trailers = {}
      for (const line of data.toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':')
        if (colon > 0) trailers[line.slice(0, colon)] = line.slice(colon + 1).trim()
      }
    }
  }
  expect(at, 'the body is whole frames').to.equal(body.length)
  return { messages, trailers }
}

describe('gRPC-Web through the proxy to grpc-js instances (real ZooKeeper)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  /**
   * A grpc-js server: Unary answers `name:body`, or the status a body of `status:N` asks for, or
   * never (body `hang`); Stream answers `name:0` .. `name:n-1` for a body of n.
   */
  async function instance(name: string, unavailable = false): Promise<Instance> {
    const calls: Instance['calls'] = []
    const server = new grpc.Server()
    server.addService(ECHO, {
      Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        const body = call.request.toString()
        const deadline = call.getDeadline()
        calls.push({ path: '/test.Echo/Unary', body, leftMs: (deadline instanceof Date ? deadline.getTime() : deadline) - Date.now() })
        if (unavailable) return cb({ code: grpc.status.UNAVAILABLE, details: `${name} is draining` })
        const m = /^status:(\d+)$/.exec(body)
        if (m !== null) return cb({ code: Number(m[1]), details: `asked for ${m[1]} (ünïcode)` })
        if (body === 'hang') return
        cb(null, Buffer.from(`${name}:${body}`))
      },
      Stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        if (call.request.toString() === 'hang') {
          // One message, then nothing: the call's deadline must end it.
          call.write(Buffer.from(`${name}:0`))
          return
        }
        const n = Number(call.request.toString())
        calls.push({ path: '/test.Echo/Stream', body: String(n), leftMs: Infinity })
        for (let i = 0; i < n; i++) call.write(Buffer.from(`${name}:${i}`))
        call.end()
      },
    })
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))))
    closers.push(() => server.forceShutdown())
    return { port, calls }
  }

  async function proxy(nodes: Record<string, object | string>, service: object = {}, deps: { accessLog?: (e: AccessEntry) => void } = {}) {
    const path = uniquePath('grpc')
    for (const [child, data] of Object.entries(nodes)) await putNode(ctx.admin, `${path}/${child}`, data)
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'echo', path, strategy: 'round-robin', match: { pathPrefix: '/test.Echo/' }, ...service }], { log: { level: 'silent', access: deps.accessLog !== undefined } }), deps)
    closers.push(() => p.close())
    return p
  }

  const h2c = (i: { port: number }) => ({ host: '127.0.0.1', port: i.port, protocol: 'h2c' })
  const upCount = (p: Awaited<ReturnType<typeof proxy>>, n: number) => waitFor(() => p.services[0]!.balancer.hosts.length === n, `${n} instance(s)`)

  function call(port: number, path: string, message: string, opts: { text?: boolean; headers?: Record<string, string> } = {}): Promise<Reply> {
    const body = frame(message)
    const type = opts.text === true ? 'application/grpc-web-text' : 'application/grpc-web+proto'
    return send(port, path, { method: 'POST', headers: { 'content-type': type, 'x-grpc-web': '1', ...opts.headers }, body: opts.text === true ? body.toString('base64') : body })
  }

  /** The status a gRPC-Web client reads: from the trailer frame, else from a trailers-only head. */
  function statusOf(r: Reply, text = false): { code: number; message: string | undefined; messages: string[] } {
    expect(r.status, 'gRPC answers are HTTP 200').to.equal(200)
    expect(r.headers['content-type']).to.match(/^application\/grpc-web/)
    expect(r.body, 'never a JSON body').to.not.match(/^\{/)
    const f = frames(text ? Buffer.from(r.body, 'base64') : r.bytes)
    const fields = f.trailers ?? (r.headers as Record<string, string>)
    return { code: Number(fields['grpc-status']), message: fields['grpc-message'] === undefined ? undefined : decodeURIComponent(fields['grpc-message']), messages: f.messages }
  }

  for (const text of [false, true]) {
    const kind = text ? 'grpc-web-text' : 'grpc-web'
    it(`translates a ${kind} unary call to gRPC and its answer back, trailers in the body`, async () => {
      const a = await instance('a')
      const p = await proxy({ a: h2c(a) })
      await upCount(p, 1)
      for (const message of ['hello', '', 'x'.repeat(70_000)]) {
        const r = await call(p.port, '/test.Echo/Unary', message, { text })
        expect(r.headers['content-type']).to.equal(text ? 'application/grpc-web-text' : 'application/grpc-web+proto')
        const s = statusOf(r, text)
        expect(s.code, `${message.length} bytes`).to.equal(0)
        expect(s.messages).to.deep.equal([`a:${message}`])
      }
      expect(a.calls.map((c) => c.body.length)).to.deep.equal([5, 0, 70_000])
    })

    it(`passes a ${kind} server-streaming call through message by message`, async () => {
      const a = await instance('a')
      const p = await proxy({ a: h2c(a) })
      await upCount(p, 1)
      for (const n of [0, 1, 5, 200]) {
        const s = statusOf(await call(p.port, '/test.Echo/Stream', String(n), { text }), text)
        expect(s.code).to.equal(0)
        expect(s.messages).to.deep.equal(Array.from({ length: n }, (_, i) => `a:${i}`))
      }
    })
  }

  it("passes an instance's own status and message on, before any message as a trailers-only answer", async () => {
    const a = await instance('a')
    const p = await proxy({ a: h2c(a) })
    await upCount(p, 1)
    for (const code of [1, 2, 3, 5, 7, 9, 13, 16]) {
      const r = await call(p.port, '/test.Echo/Unary', `status:${code}`)
      expect(r.headers['grpc-status'], `status ${code} in the head`).to.equal(String(code))
      const s = statusOf(r)
      expect(s).to.include({ code, message: `asked for ${code} (ünïcode)` })
      expect(s.messages).to.deep.equal([])
    }
  })

  it('answers each failure of its own in gRPC terms: no instance 14, connect failure 14, unknown route 12, body too large 8, bad grpc-timeout or base64 13', async () => {
    const dead = await deadPort(closers)
    const empty = await proxy({})
    expect(statusOf(await call(empty.port, '/test.Echo/Unary', 'x')).code, 'no instance').to.equal(14)
    expect(statusOf(await call(empty.port, '/other.Service/Call', 'x')).code, 'no route').to.equal(12)
    const p = await proxy({ d: { host: '127.0.0.1', port: dead, protocol: 'h2c' } })
    await upCount(p, 1)
    expect(statusOf(await call(p.port, '/test.Echo/Unary', 'x')).code, 'connect failure').to.equal(14)
    const a = await instance('a')
    const small = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'echo', path: await (async () => {
      const path = uniquePath('grpc')
      await putNode(ctx.admin, `${path}/a`, h2c(a))
      return path
    })() }], { limits: { maxBodyBytes: 100 } }))
    closers.push(() => small.close())
    await waitFor(() => small.services[0]!.balancer.hosts.length === 1, 'instance')
    expect(statusOf(await call(small.port, '/test.Echo/Unary', 'x'.repeat(200))).code, 'body too large').to.equal(8)
    for (const bad of ['1.5S', '123456789m', '-1S', '10', 'soon']) {
      const s = statusOf(await call(small.port, '/test.Echo/Unary', 'x', { headers: { 'grpc-timeout': bad } }))
      expect(s.code, bad).to.equal(13)
      expect(s.message).to.include('grpc-timeout')
    }
    for (const garbage of ['not base64!', 'QQ=A', 'QUJD\n']) {
      const garbled = await send(small.port, '/test.Echo/Unary', { method: 'POST', headers: { 'content-type': 'application/grpc-web-text' }, body: garbage })
      expect(statusOf(garbled, true).code, JSON.stringify(garbage)).to.equal(13)
    }
    expect(a.calls, 'no refused call reached the instance').to.deep.equal([])
  })

  it("maps an instance's plain HTTP error by gRPC's table, and a reset stream to UNAVAILABLE", async () => {
    const answers = new Map([['/test.Echo/A', 404], ['/test.Echo/B', 503], ['/test.Echo/C', 401], ['/test.Echo/D', 500]])
    const server = http2.createServer()
    server.on('stream', (stream, headers) => {
      stream.on('error', () => {})
      if (headers[':path'] === '/test.Echo/Reset') {
        stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)
        return
      }
      stream.respond({ ':status': answers.get(headers[':path']!) ?? 400, 'content-type': 'text/html' })
      stream.end('<html>no</html>')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    closers.push(() => new Promise<void>((r) => server.close(() => r())))
    const p = await proxy({ s: h2c({ port: (server.address() as AddressInfo).port }) }, { retry: { on: [] } })
    await upCount(p, 1)
    const expected: Record<string, number> = { A: 12, B: 14, C: 16, D: 2, Reset: 14 }
    for (const [m, code] of Object.entries(expected)) expect(statusOf(await call(p.port, `/test.Echo/${m}`, 'x')).code, m).to.equal(code)
  })

  it('ends a call at its grpc-timeout with DEADLINE_EXCEEDED and passes the time left on', async () => {
    const a = await instance('a')
    const p = await proxy({ a: h2c(a) })
    await upCount(p, 1)
    const s = statusOf(await call(p.port, '/test.Echo/Unary', 'hang', { headers: { 'grpc-timeout': '300m' } }))
    expect(s.code).to.equal(4)
    const ok = statusOf(await call(p.port, '/test.Echo/Unary', 'hi', { headers: { 'grpc-timeout': '20S' } }))
    expect(ok.code).to.equal(0)
    // After a message went out, the deadline's status comes in the trailer frame, in both encodings.
    for (const text of [false, true]) {
      const r = await call(p.port, '/test.Echo/Stream', 'hang', { text, headers: { 'grpc-timeout': '300m' } })
      const mid = statusOf(r, text)
      expect(mid.messages, text ? 'text' : 'binary').to.deep.equal(['a:0'])
      expect(mid.code).to.equal(4)
    }
    const left = a.calls.map((c) => c.leftMs)
    expect(left).to.have.length(2)
    // The instance got a deadline, no later than the client's.
    expect(left[0]).to.be.at.most(300).and.above(0)
    expect(left[1]).to.be.at.most(20_000).and.above(0)
  })

  it('retries an UNAVAILABLE answer on another instance, and outlier detection counts it as a failure', async () => {
    const bad = await instance('bad', true)
    const good = await instance('good')
    const p = await proxy({ bad: h2c(bad), good: h2c(good) }, { outlier: { consecutiveFailures: 2 } })
    await upCount(p, 2)
    for (let i = 0; i < 10; i++) {
      const s = statusOf(await call(p.port, '/test.Echo/Unary', `m${i}`))
      expect(s.code, `call ${i}`).to.equal(0)
      expect(s.messages).to.deep.equal([`good:m${i}`])
    }
    expect(bad.calls.length, 'round-robin sent some calls to the draining instance first').to.be.above(0)
    expect(good.calls.length).to.equal(10)
    // Two UNAVAILABLE answers in a row are two failures: outlier detection ejects the instance.
    const badHost = p.services[0]!.balancer.hosts.find((h) => h.port === bad.port)!
    expect(instanceState(badHost)).to.equal('ejected')
    expect(bad.calls.length, 'nothing more went to it once ejected').to.equal(2)
    // Without grpc-unavailable in retry.on, the status is the client's.
    const q = await proxy({ bad: h2c(bad) }, { retry: { on: ['connect-failure'] } })
    await upCount(q, 1)
    const s = statusOf(await call(q.port, '/test.Echo/Unary', 'x'))
    expect(s).to.include({ code: 14, message: 'bad is draining' })
  })

  it('counts calls in zoo_proxy_grpc_responses_total and writes the status in the access log', async () => {
    const a = await instance('a')
    const lines: AccessEntry[] = []
    const p = await proxy({ a: h2c(a) }, {}, { accessLog: (e: AccessEntry) => lines.push(e) })
    await upCount(p, 1)
    await call(p.port, '/test.Echo/Unary', 'ok')
    await call(p.port, '/test.Echo/Unary', 'status:5')
    await call(p.port, '/test.Echo/Stream', '3')
    const text = await scrape(p.adminPort)
    expect(metric(text, 'zoo_proxy_grpc_responses_total{service="echo",code="0"}')).to.equal(2)
    expect(metric(text, 'zoo_proxy_grpc_responses_total{service="echo",code="5"}')).to.equal(1)
    await waitFor(() => lines.length >= 3, 'access lines')
    expect(lines.map((l) => l.grpcStatus)).to.deep.equal([0, 5, 0])
  })

  it('answers a CORS preflight for the origins configured and lets browsers read the status', async () => {
    const a = await instance('a')
    const p = await proxy({ a: h2c(a) }, { grpcWeb: { cors: { origins: ['https://app.example'], allowHeaders: ['authorization'] } } })
    await upCount(p, 1)
    const pre = await send(p.port, '/test.Echo/Unary', { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-grpc-web' } })
    expect(pre.status).to.equal(204)
    expect(pre.headers).to.include({ 'access-control-allow-origin': 'https://app.example', 'access-control-allow-methods': 'POST, OPTIONS', 'access-control-max-age': '86400' })
    expect(pre.headers['access-control-allow-headers']).to.equal('content-type, x-grpc-web, x-user-agent, grpc-timeout, authorization')
    const r = await call(p.port, '/test.Echo/Unary', 'hi', { headers: { origin: 'https://app.example' } })
    expect(r.headers['access-control-allow-origin']).to.equal('https://app.example')
    expect(r.headers['access-control-expose-headers']).to.include('grpc-status')
    const other = await call(p.port, '/test.Echo/Unary', 'hi', { headers: { origin: 'https://evil.example' } })
    expect(other.headers['access-control-allow-origin']).to.equal(undefined)
    expect(a.calls.length, 'the preflight never reached the instance').to.equal(2)
  })

  it('finds Dubbo Triple providers in ZooKeeper as Dubbo writes them, and skips dubbo:// ones with the reason', async () => {
    const a = await instance('a')
    const b = await instance('b')
    const iface = `org.apache.dubbo.demo.DemoService${process.pid}${Date.now()}`
    const path = `/dubbo/${iface}/providers`
    const params = `anyhost=true&application=demo-provider&deprecated=false&dubbo=2.0.2&dynamic=true&generic=false&interface=${iface}&methods=sayHello&side=provider&timestamp=1722955607339`
    const name = (url: string) => encodeURIComponent(url).replace(/%20/g, '+')
    // Curator's default data is the registering host's address: written as Dubbo does.
    await putNode(ctx.admin, `${path}/${name(`tri://127.0.0.1:${a.port}/${iface}?${params}`)}`, '127.0.0.1')
    await putNode(ctx.admin, `${path}/${name(`tri://127.0.0.1:${b.port}/${iface}?${params}&weight=50`)}`, '127.0.0.1')
    await putNode(ctx.admin, `${path}/${name(`tri://127.0.0.1:1/${iface}?${params}&disabled=true`)}`, '127.0.0.1')
    await putNode(ctx.admin, `${path}/${name(`dubbo://127.0.0.1:20880/${iface}?${params}`)}`, '127.0.0.1')
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'echo', path, strategy: 'round-robin' }]))
    closers.push(() => p.close())
    await upCount(p, 2)
    const seen = new Set<string>()
    for (let i = 0; i < 6; i++) {
      const s = statusOf(await call(p.port, '/test.Echo/Unary', 'hi'))
      expect(s.code).to.equal(0)
      seen.add(s.messages[0]!)
    }
    expect([...seen].sort()).to.deep.equal(['a:hi', 'b:hi'])
    const report = p.upstreams() as { services: { echo: { skipped: { name: string; reason: string }[] } } }
    const reasons = report.services.echo.skipped.map((x) => x.reason).sort()
    expect(reasons).to.have.length(2)
    expect(reasons[0]).to.match(/^Dubbo binary protocol \(dubbo:\/\/\)/)
    expect(reasons[1]).to.match(/disabled/)
  })
})
