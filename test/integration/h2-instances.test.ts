// HTTP/2 toward instances, wired (issue 26 §3): an instance whose znode says "protocol": "h2c" or
// "h2" (or whose service says upstreamProtocol) is reached over HTTP/2 by an HTTP/1.1 client's
// requests through the proxy; a stream the instance provably never processed (GOAWAY above its
// last-stream-id, REFUSED_STREAM) goes to another instance whatever the method; a certificate
// that does not verify is a 502; upgrades are refused with a 502 until RFC 8441; health checks
// speak HTTP/2.

import { expect } from 'chai'
import { readFileSync } from 'node:fs'
import http2 from 'node:http2'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { useCerts } from '../support/certs.js'
import { makeConfig, putNode, send, startProxy, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'
import { frame } from '../support/h2-frames.js'

const { NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants

interface Seen {
  method: string
  path: string
  body: string
  userAgent: string | undefined
}

const PREFACE_BYTES = 24

describe('HTTP/2 instances behind the proxy (real ZooKeeper, real node:http2 servers)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()
  const certs = useCerts()
  const other = useCerts()

  /**
   * An HTTP/2 instance (TLS with `certs` when `secure`) answering `name method body`; with
   * `misbehave` it sends GOAWAY(last-stream-id 0) or resets with REFUSED_STREAM instead, before
   * reading anything.
   */
  async function h2Instance(name: string, secure: boolean, misbehave: 'refuse' | null = null) {
    const seen: Seen[] = []
    let refused = 0
    const server = secure ? http2.createSecureServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }) : http2.createServer()
    const sessions = new Set<http2.ServerHttp2Session>()
    server.on('session', (s) => {
      sessions.add(s)
      s.on('close', () => sessions.delete(s))
    })
    server.on('stream', (stream, headers) => {
      // A server-side stream error is an 'error' event: expected here.
      stream.on('error', () => {})
      if (misbehave === 'refuse') {
        refused++
        stream.close(NGHTTP2_REFUSED_STREAM)
        return
      }
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        const body = Buffer.concat(chunks).toString()
        seen.push({ method: headers[':method']!, path: headers[':path']!, body, userAgent: headers['user-agent'] })
        const answer = `${name} ${headers[':method']!} ${body}`
        stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(answer)) })
        stream.end(answer)
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    closers.push(
      () =>
        new Promise<void>((r) => {
          server.close(() => r())
          for (const s of sessions) s.destroy()
        }),
    )
    return { port: (server.address() as AddressInfo).port, seen, refused: () => refused }
  }

  /**
   * An h2c instance written frame by frame, since node:http2 turns a GOAWAY last-stream-id of 0
   * into the last stream it processed: it answers each request's HEADERS with GOAWAY(NO_ERROR,
   * last-stream-id 0), so no stream was processed (RFC 9113 §6.8), then closes.
   */
  async function goawayInstance() {
    let refused = 0
    const sockets = new Set<net.Socket>()
    const server = net.createServer((socket) => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => {})
      let buf = Buffer.alloc(0)
      let prefaceSeen = false
      socket.write(frame(4, 0, 0))
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d])
        if (!prefaceSeen) {
          if (buf.length < PREFACE_BYTES) return
          buf = buf.subarray(PREFACE_BYTES)
          prefaceSeen = true
        }
        while (buf.length >= 9) {
          const len = buf.readUIntBE(0, 3)
          if (buf.length < 9 + len) return
          const type = buf[3]!
          const flags = buf[4]!
          buf = buf.subarray(9 + len)
          if (type === 4 && (flags & 1) === 0) socket.write(frame(4, 1, 0))
          if (type === 1) {
            refused++
            const payload = Buffer.alloc(8)
            payload.writeUInt32BE(0, 0)
            payload.writeUInt32BE(NGHTTP2_NO_ERROR, 4)
            socket.end(frame(7, 0, 0, payload))
            return
          }
        }
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    closers.push(
      () =>
        new Promise<void>((r) => {
          server.close(() => r())
          for (const s of sockets) s.destroy()
        }),
    )
    return { port: (server.address() as AddressInfo).port, seen: [] as Seen[], refused: () => refused }
  }

  async function proxy(nodes: Record<string, object | string>, service: object = {}, extra: object = {}) {
    const path = uniquePath('h2i')
    for (const [child, data] of Object.entries(nodes)) await putNode(ctx.admin, `${path}/${child}`, data)
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path, strategy: 'round-robin', ...service }], extra))
    closers.push(() => p.close())
    return p
  }

  const upCount = (p: Awaited<ReturnType<typeof proxy>>, n: number) => waitFor(() => p.services[0]!.balancer.hosts.length === n, `${n} instance(s)`)

  for (const secure of [false, true]) {
    const protocol = secure ? 'h2' : 'h2c'
    it(`forwards an HTTP/1.1 client's GET and POST with a body to an ${protocol} instance`, async () => {
      const up = await h2Instance('a', secure)
      const p = await proxy({ i: { host: '127.0.0.1', port: up.port, protocol } }, {}, secure ? { upstreamTls: { ca: certs.caCert } } : {})
      await upCount(p, 1)
      expect(await send(p.port, '/x?q=1')).to.include({ status: 200, body: 'a GET ' })
      for (const body of ['', 'hello', 'x'.repeat(100_000)]) {
        const r = await send(p.port, '/post', { method: 'POST', body, headers: { 'content-type': 'text/plain' } })
        expect(r.status, `POST of ${body.length} bytes`).to.equal(200)
        expect(r.body).to.equal(`a POST ${body}`)
      }
      expect(up.seen.map((s) => `${s.method} ${s.path}`)).to.deep.equal(['GET /x?q=1', 'POST /post', 'POST /post', 'POST /post'])
    })
  }

  it("takes the service's upstreamProtocol for instances whose data does not say (Curator, plain host:port)", async () => {
    const a = await h2Instance('a', false)
    const b = await h2Instance('b', false)
    const curator = { name: 'example', id: 'x1', address: '127.0.0.1', port: a.port, payload: null, registrationTimeUTC: 0, serviceType: 'DYNAMIC' }
    const p = await proxy({ a: curator, b: `127.0.0.1:${b.port}` }, { upstreamProtocol: 'h2c' })
    await upCount(p, 2)
    const bodies = new Set<string>()
    for (let i = 0; i < 4; i++) bodies.add((await send(p.port)).body)
    expect([...bodies].sort()).to.deep.equal(['a GET ', 'b GET '])
  })

  it('spreads many concurrent requests over two h2c instances by round-robin', async () => {
    const a = await h2Instance('a', false)
    const b = await h2Instance('b', false)
    const p = await proxy({ a: { host: '127.0.0.1', port: a.port, protocol: 'h2c' }, b: { host: '127.0.0.1', port: b.port, protocol: 'h2c' } })
    await upCount(p, 2)
    const n = 200
    const replies = await Promise.all(Array.from({ length: n }, (_, i) => send(p.port, `/r${i}`)))
    expect(replies.every((r) => r.status === 200)).to.equal(true)
    // Round-robin hands out picks alternately, so the two counts are equal whatever the order of arrival.
    expect(a.seen.length).to.equal(n / 2)
    expect(b.seen.length).to.equal(n / 2)
  })

  for (const misbehave of ['goaway', 'refuse'] as const) {
    const what = misbehave === 'goaway' ? 'GOAWAY with last-stream-id 0' : 'REFUSED_STREAM'
    it(`sends a request the instance never processed (${what}) to the other instance, POST included`, async () => {
      const bad = misbehave === 'goaway' ? await goawayInstance() : await h2Instance('bad', false, 'refuse')
      const good = await h2Instance('good', false)
      const p = await proxy({ bad: { host: '127.0.0.1', port: bad.port, protocol: 'h2c' }, good: { host: '127.0.0.1', port: good.port, protocol: 'h2c' } })
      await upCount(p, 2)
      for (let i = 0; i < 4; i++) {
        for (const method of ['GET', 'POST', 'PATCH']) {
          const r = await send(p.port, '/once', method === 'GET' ? {} : { method, body: `body ${i}` })
          expect(r.status, `${method} ${i}`).to.equal(200)
          expect(r.body).to.equal(`good ${method} ${method === 'GET' ? '' : `body ${i}`}`)
        }
      }
      // Round-robin sent some first attempts to the bad one; each was answered by the good one.
      expect(bad.refused()).to.be.at.least(1)
      expect(good.seen).to.have.length(12)
    })
  }

  it('skips a znode whose protocol is not h2, h2c or http/1.1, or contradicts its scheme, with the reason', async () => {
    const good = await h2Instance('good', false)
    const nodes: Record<string, object> = { good: { host: '127.0.0.1', port: good.port, protocol: 'h2c' } }
    const bad: Record<string, unknown> = { h3: 'h3', upper: 'H2', http2: 'http/2', number: 2, nul: null, empty: '', array: ['h2'] }
    for (const [name, protocol] of Object.entries(bad)) nodes[name] = { host: '127.0.0.1', port: good.port, protocol }
    nodes.h2http = { host: '127.0.0.1', port: good.port, protocol: 'h2', scheme: 'http' }
    nodes.h2chttps = { host: '127.0.0.1', port: good.port, protocol: 'h2c', scheme: 'https' }
    const p = await proxy(nodes)
    await upCount(p, 1)
    const report = p.upstreams() as { services: { example: { skipped: { name: string; reason: string }[] } } }
    const skipped = report.services.example.skipped
    expect(skipped.map((s) => s.name).sort()).to.deep.equal([...Object.keys(bad), 'h2http', 'h2chttps'].sort())
    for (const s of skipped) expect(s.reason, s.name).to.match(/protocol/)
    expect(await send(p.port)).to.include({ status: 200, body: 'good GET ' })
  })

  it('answers 502 when an h2 instance certificate does not verify (another CA, or the system CAs), never speaking unverified', async () => {
    const up = await h2Instance('a', true)
    for (const extra of [{ upstreamTls: { ca: other.caCert } }, {}]) {
      const p = await proxy({ i: { host: '127.0.0.1', port: up.port, protocol: 'h2' } }, { retry: { attempts: 1 } }, extra)
      await upCount(p, 1)
      const r = await send(p.port, '/', { method: 'POST', body: 'secret' })
      expect(r.status).to.equal(502)
      expect(JSON.parse(r.body).error).to.equal('ZP_ERR_UPSTREAM_CONNECT')
    }
    expect(up.seen).to.deep.equal([])
  })

  it('refuses an upgrade (WebSocket) to an h2 or h2c instance with a 502 that says why', async () => {
    const up = await h2Instance('a', false)
    const p = await proxy({ i: { host: '127.0.0.1', port: up.port, protocol: 'h2c' } })
    await upCount(p, 1)
    const s = net.connect(p.port, '127.0.0.1')
    closers.push(() => s.destroy())
    const answer = await new Promise<string>((resolve, reject) => {
      let got = ''
      s.on('data', (d: Buffer) => (got += d.toString('latin1')))
      s.once('close', () => resolve(got))
      s.once('error', reject)
      s.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
    })
    expect(answer.slice(0, 12)).to.equal('HTTP/1.1 502')
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: string; message: string }
    expect(body.error).to.equal('ZP_ERR_UPGRADE_UNSUPPORTED')
    expect(body.message).to.include('h2c')
    expect(up.seen).to.deep.equal([])
    // The instance is not blamed for what the proxy cannot do yet.
    expect(p.services[0]!.balancer.hosts[0]!.failures).to.equal(0)
  })

  for (const secure of [false, true]) {
    const protocol = secure ? 'h2' : 'h2c'
    it(`health-checks an ${protocol} instance over HTTP/2 with the requests' TLS context`, async () => {
      const up = await h2Instance('a', secure)
      const p = await proxy(
        { i: { host: '127.0.0.1', port: up.port, protocol } },
        { healthCheck: { path: '/health', intervalMs: 100, timeoutMs: 2_000, healthyThreshold: 1, unhealthyThreshold: 1 } },
        secure ? { upstreamTls: { ca: certs.caCert } } : {},
      )
      await waitFor(() => up.seen.some((s) => s.path === '/health'), 'a health check over HTTP/2')
      expect(up.seen.find((s) => s.path === '/health')!.userAgent).to.equal('zoo-proxy-health-check')
      expect(p.services[0]!.balancer.hosts[0]!.checkHealthy).to.equal(true)
    })
  }

  it('takes an h2 instance whose certificate does not verify out of rotation by its health check', async () => {
    const up = await h2Instance('a', true)
    const p = await proxy(
      { i: { host: '127.0.0.1', port: up.port, protocol: 'h2' } },
      { healthCheck: { path: '/health', intervalMs: 100, timeoutMs: 2_000, healthyThreshold: 1, unhealthyThreshold: 1 } },
      { upstreamTls: { ca: other.caCert } },
    )
    await waitFor(() => p.services[0]!.balancer.hosts[0]?.checkHealthy === false, 'unhealthy')
    expect(up.seen).to.deep.equal([])
  })
})
