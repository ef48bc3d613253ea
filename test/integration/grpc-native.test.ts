// Native gRPC through the proxy's HTTP/2 front (issue 27 with issue 26 §2): real @grpc/grpc-js
// clients speak h2c with prior knowledge to the proxy, which forwards each call over h2c to real
// grpc-js instances found in real ZooKeeper. Unary and the three streaming kinds, trailers as
// HTTP/2 trailers, every status the proxy makes itself, deadlines, cancellation both ways,
// per-call balancing over one channel, retry of UNAVAILABLE, and flow control on a stream.

import { Buffer } from 'node:buffer'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import * as grpc from '@grpc/grpc-js'
import { expect } from 'chai'
import { deadPort, makeConfig, putNode, startProxy, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'
import { seededRandom } from '../support/random.js'

const raw = { serialize: (b: Buffer): Buffer => b, deserialize: (b: Buffer): Buffer => b }

function method(name: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> {
  return { path: `/test.Echo/${name}`, requestStream, responseStream, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize }
}

/** A service definition without a .proto: messages are raw bytes. */
const ECHO: grpc.ServiceDefinition = {
  Unary: method('Unary', false, false),
  Stream: method('Stream', false, true),
  Collect: method('Collect', true, false),
  Chat: method('Chat', true, true),
}

interface Instance {
  readonly name: string
  readonly port: number
  calls: number
  /** Server-streaming calls that saw their client cancel. */
  cancelled: number
  /** Messages a server stream wrote before its client stopped reading (Stream with body `flood`). */
  floodWritten: number
  floodStalled: boolean
}

interface Outcome {
  readonly code: number
  readonly details: string
  readonly messages: string[]
  readonly trailers: Record<string, unknown>
}

describe('native gRPC through the HTTP/2 front to grpc-js instances (real ZooKeeper)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  /**
   * Unary answers `name:body`, the status a body `status:N` asks for (with a trailer `x-from`),
   * nothing for `hang`, UNAVAILABLE for every call when `unavailable`. Stream writes `name:0..n-1`
   * (`hang`: one message then nothing; `flood`: 16 KiB messages until backpressure). Collect answers
   * the messages joined; Chat echoes each.
   */
  async function instance(name: string, unavailable = false): Promise<Instance> {
    const inst: Instance = { name, port: 0, calls: 0, cancelled: 0, floodWritten: 0, floodStalled: false }
    const server = new grpc.Server()
    server.addService(ECHO, {
      Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        inst.calls++
        const body = call.request.toString()
        if (unavailable) return cb({ code: grpc.status.UNAVAILABLE, details: `${name} is draining` })
        const m = /^status:(\d+)$/.exec(body)
        const trailer = new grpc.Metadata()
        trailer.set('x-from', name)
        if (m !== null) return cb({ code: Number(m[1]), details: `asked for ${m[1]}`, metadata: trailer })
        if (body === 'hang') return
        cb(null, Buffer.from(`${name}:${body}`), trailer)
      },
      Stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        inst.calls++
        call.on('cancelled', () => inst.cancelled++)
        const body = call.request.toString()
        if (body === 'hang') {
          call.write(Buffer.from(`${name}:0`))
          return
        }
        if (body === 'flood') {
          const chunk = Buffer.alloc(16 * 1024, 120)
          const pump = (): void => {
            while (!call.cancelled) {
              inst.floodWritten++
              if (!call.write(chunk)) {
                inst.floodStalled = true
                call.once('drain', pump)
                return
              }
            }
          }
          pump()
          return
        }
        const n = Number(body)
        for (let i = 0; i < n; i++) call.write(Buffer.from(`${name}:${i}`))
        call.end()
      },
      Collect: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        inst.calls++
        const got: string[] = []
        call.on('data', (m: Buffer) => got.push(m.toString()))
        call.on('end', () => (unavailable ? cb({ code: grpc.status.UNAVAILABLE, details: `${name} is draining` }) : cb(null, Buffer.from(`${name}:${got.join(',')}`))))
      },
      Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        inst.calls++
        call.on('data', (m: Buffer) => call.write(Buffer.from(`${name}:${m.toString()}`)))
        call.on('end', () => call.end())
      },
    })
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))))
    closers.push(() => server.forceShutdown())
    return Object.assign(inst, { port })
  }

  async function proxy(nodes: Record<string, object>, service: object = {}, extra: object = {}) {
    const path = uniquePath('grpc-native')
    for (const [child, data] of Object.entries(nodes)) await putNode(ctx.admin, `${path}/${child}`, data)
    // Seeded, so the random strategy's split is the same on every run.
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'echo', path, strategy: 'round-robin', match: { pathPrefix: '/test.Echo/' }, ...service }], extra), { random: seededRandom(27) })
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === Object.keys(nodes).length, 'instances')
    return p
  }

  const h2c = (i: { port: number }) => ({ host: '127.0.0.1', port: i.port, protocol: 'h2c' })

  /** One channel to the proxy's plain listener (h2c with prior knowledge, as grpc-js speaks it). */
  function client(port: number): grpc.Client {
    const c = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
    closers.push(() => c.close())
    return c
  }

  function unary(c: grpc.Client, message: string, options: grpc.CallOptions = {}, path = '/test.Echo/Unary'): Promise<Outcome> {
    return new Promise((resolve) => {
      const messages: string[] = []
      let trailers: Record<string, unknown> = {}
      const call = c.makeUnaryRequest(path, raw.serialize, raw.deserialize, Buffer.from(message), new grpc.Metadata(), options, (err, res) => {
        if (res !== undefined) messages.push(res.toString())
        void err
      })
      call.on('status', (s: grpc.StatusObject) => {
        trailers = s.metadata.getMap()
        resolve({ code: s.code, details: s.details, messages, trailers })
      })
    })
  }

  function serverStream(c: grpc.Client, message: string, options: grpc.CallOptions = {}): Promise<Outcome> {
    return new Promise((resolve) => {
      const messages: string[] = []
      const call = c.makeServerStreamRequest('/test.Echo/Stream', raw.serialize, raw.deserialize, Buffer.from(message), new grpc.Metadata(), options)
      call.on('data', (m: Buffer) => messages.push(m.toString()))
      call.on('error', () => {})
      call.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details, messages, trailers: s.metadata.getMap() }))
    })
  }

  it('passes unary calls and their trailers through, and an instance status before any message as trailers-only', async () => {
    const a = await instance('a')
    const p = await proxy({ a: h2c(a) })
    const c = client(p.port)
    for (const message of ['hello', '', 'x'.repeat(100_000)]) {
      const r = await unary(c, message)
      expect(r.code, `${message.length} bytes`).to.equal(0)
      expect(r.messages).to.deep.equal([`a:${message}`])
      expect(r.trailers['x-from'], 'the instance trailer reached the client as an HTTP/2 trailer').to.equal('a')
    }
    for (const code of [1, 2, 3, 5, 7, 9, 13, 16]) {
      const r = await unary(c, `status:${code}`)
      expect(r).to.deep.include({ code, details: `asked for ${code}`, messages: [] })
      expect(r.trailers['x-from']).to.equal('a')
    }
  })

  it('passes server-, client- and bidi-streaming calls through message by message', async () => {
    const a = await instance('a')
    const p = await proxy({ a: h2c(a) })
    const c = client(p.port)
    for (const n of [0, 1, 500]) {
      const r = await serverStream(c, String(n))
      expect(r.code).to.equal(0)
      expect(r.messages).to.deep.equal(Array.from({ length: n }, (_, i) => `a:${i}`))
    }
    const collected = await new Promise<string>((resolve, reject) => {
      const call = c.makeClientStreamRequest('/test.Echo/Collect', raw.serialize, raw.deserialize, (err, res) => (err ? reject(err) : resolve(res!.toString())))
      for (let i = 0; i < 300; i++) call.write(Buffer.from(String(i)))
      call.end()
    })
    expect(collected).to.equal(`a:${Array.from({ length: 300 }, (_, i) => i).join(',')}`)
    // Bidi: each reply comes before the next message is sent, so the proxy holds nothing back.
    const chat = c.makeBidiStreamRequest('/test.Echo/Chat', raw.serialize, raw.deserialize)
    chat.on('error', () => {})
    const replies: string[] = []
    for (let i = 0; i < 20; i++) {
      const next = new Promise<string>((resolve) => chat.once('data', (m: Buffer) => resolve(m.toString())))
      chat.write(Buffer.from(`m${i}`))
      replies.push(await next)
    }
    const status = new Promise<number>((resolve) => chat.on('status', (s: grpc.StatusObject) => resolve(s.code)))
    chat.end()
    expect(await status).to.equal(0)
    expect(replies).to.deep.equal(Array.from({ length: 20 }, (_, i) => `a:m${i}`))
  })

  it('answers each failure of its own as trailers-only: no instance 14, connect failure 14, deadline 4, too large 8, unknown route 12', async () => {
    const empty = await proxy({})
    const e = client(empty.port)
    expect(await unary(e, 'x'), 'no instance').to.deep.include({ code: 14, messages: [] })
    expect(await unary(e, 'x', {}, '/other.Service/Call'), 'no route').to.deep.include({ code: 12, messages: [] })
    const dead = await deadPort(closers)
    const d = await proxy({ d: { host: '127.0.0.1', port: dead, protocol: 'h2c' } })
    expect(await unary(client(d.port), 'x'), 'connect failure').to.deep.include({ code: 14, messages: [] })
    const a = await instance('a')
    const small = await proxy({ a: h2c(a) }, {}, { limits: { maxBodyBytes: 1000 } })
    const s = client(small.port)
    expect(await unary(s, 'x'.repeat(2000)), 'too large').to.deep.include({ code: 8, messages: [] })
    // The proxy's deadline, not the client's: the client waits far longer than the call's grpc-timeout.
    const slow = await proxy({ a: h2c(a) }, { timeoutMs: 300 })
    const hung = await unary(client(slow.port), 'hang', { deadline: Date.now() + 20_000 })
    expect(hung, 'deadline').to.deep.include({ code: 4, messages: [] })
    // After a message went out, the deadline's status comes as the trailers of the stream.
    const mid = await serverStream(client(slow.port), 'hang', { deadline: Date.now() + 20_000 })
    expect(mid).to.deep.include({ code: 4, messages: ['a:0'] })
    expect(a.calls, 'only the hanging calls reached the instance').to.equal(2)
  })

  it("ends a call at the client's grpc-timeout with DEADLINE_EXCEEDED", async () => {
    const a = await instance('a')
    const p = await proxy({ a: h2c(a) })
    const r = await unary(client(p.port), 'hang', { deadline: Date.now() + 300 })
    expect(r.code).to.equal(4)
  })

  it('resets the stream to the instance when the client cancels', async () => {
    const a = await instance('a')
    const p = await proxy({ a: h2c(a) })
    const c = client(p.port)
    const call = c.makeServerStreamRequest('/test.Echo/Stream', raw.serialize, raw.deserialize, Buffer.from('hang'), new grpc.Metadata(), {})
    call.on('error', () => {})
    await new Promise((resolve) => call.once('data', resolve))
    call.cancel()
    await waitFor(() => a.cancelled === 1, 'the instance saw its call cancelled')
    // The channel and the proxy serve the next call.
    expect((await unary(c, 'next')).messages).to.deep.equal(['a:next'])
  })

  it('resets the upstream stream with CANCEL, the code RST_STREAM carries, when the client cancels', async () => {
    const codes: number[] = []
    const server = http2.createServer()
    server.on('stream', (stream) => {
      stream.on('error', () => {})
      stream.on('close', () => codes.push(stream.rstCode))
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' })
      stream.write(Buffer.from([0, 0, 0, 0, 1, 120]))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    closers.push(() => new Promise<void>((r) => server.close(() => r())))
    const p = await proxy({ s: h2c({ port: (server.address() as AddressInfo).port }) })
    const call = client(p.port).makeServerStreamRequest('/test.Echo/Stream', raw.serialize, raw.deserialize, Buffer.from('x'), new grpc.Metadata(), {})
    call.on('error', () => {})
    await new Promise((resolve) => call.once('data', resolve))
    call.cancel()
    await waitFor(() => codes.length === 1, 'the upstream stream closed')
    expect(codes).to.deep.equal([http2.constants.NGHTTP2_CANCEL])
  })

  it('answers UNAVAILABLE when an instance resets before any message, and resets the client stream after one', async () => {
    const server = http2.createServer()
    server.on('stream', (stream, headers) => {
      stream.on('error', () => {})
      if (headers[':path'] === '/test.Echo/Stream') {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' })
        const m = Buffer.from('half')
        const f = Buffer.alloc(5 + m.length)
        f.writeUInt32BE(m.length, 1)
        m.copy(f, 5)
        stream.write(f, () => setImmediate(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)))
        return
      }
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    closers.push(() => new Promise<void>((r) => server.close(() => r())))
    const p = await proxy({ s: h2c({ port: (server.address() as AddressInfo).port }) }, { retry: { on: [] } })
    const c = client(p.port)
    expect(await unary(c, 'x'), 'reset before any message').to.deep.include({ code: 14, messages: [] })
    const mid = await serverStream(c, '1')
    expect(mid.messages, 'the message before the reset').to.deep.equal(['half'])
    expect(mid.code, 'a reset stream is not a success').to.not.equal(0)
  })

  it('balances per call over one channel: three instances share 3000 calls, each a third', async function () {
    this.timeout(120_000)
    const all = await Promise.all(['a', 'b', 'c'].map((n) => instance(n)))
    const p = await proxy(Object.fromEntries(all.map((i) => [i.name, h2c(i)])), { strategy: 'random' })
    const c = client(p.port)
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 }
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < 3000) {
        next++
        const r = await unary(c, 'x')
        expect(r.code).to.equal(0)
        counts[r.messages[0]!.split(':')[0]!]!++
      }
    }
    await Promise.all(Array.from({ length: 32 }, worker))
    for (const [name, n] of Object.entries(counts)) expect(n / 3000, name).to.be.within(0.3033, 0.3633)
    expect(all.map((i) => i.calls).reduce((x, y) => x + y)).to.equal(3000)
  })

  it('retries an UNAVAILABLE answer of a draining instance on another one', async () => {
    const bad = await instance('bad', true)
    const good = await instance('good')
    const p = await proxy({ bad: h2c(bad), good: h2c(good) }, { outlier: { consecutiveFailures: 1000 } })
    const c = client(p.port)
    for (let i = 0; i < 10; i++) expect(await unary(c, `m${i}`), `call ${i}`).to.deep.include({ code: 0, messages: [`good:m${i}`] })
    expect(bad.calls, 'round-robin sent calls to the draining instance first').to.be.above(0)
    expect(good.calls).to.equal(10)
    // A client-streaming call streams at once; what it sent is kept and replayed to the next instance.
    const before = bad.calls
    for (let i = 0; i < 4; i++) {
      const collected = await new Promise<string>((resolve, reject) => {
        const call = c.makeClientStreamRequest('/test.Echo/Collect', raw.serialize, raw.deserialize, (err, res) => (err ? reject(err) : resolve(res!.toString())))
        for (let m = 0; m < 50; m++) call.write(Buffer.from(`${i}.${m}`))
        call.end()
      })
      expect(collected, `call ${i}`).to.equal(`good:${Array.from({ length: 50 }, (_, m) => `${i}.${m}`).join(',')}`)
    }
    expect(bad.calls - before, 'round-robin sent some of them to the draining instance first').to.be.above(0)
    expect(good.calls).to.equal(14)
  })

  it("holds a client stream to the flow-control windows when the instance stops reading", async () => {
    const server = http2.createServer()
    server.on('stream', (stream) => {
      stream.on('error', () => {})
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' })
      // Never read: no WINDOW_UPDATE goes back to the proxy.
      stream.pause()
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    closers.push(() => new Promise<void>((r) => server.close(() => r())))
    const p = await proxy({ s: h2c({ port: (server.address() as AddressInfo).port }) })
    const call = client(p.port).makeClientStreamRequest('/test.Echo/Collect', raw.serialize, raw.deserialize, () => {})
    call.on('error', () => {})
    let sent = 0
    const chunk = Buffer.alloc(16 * 1024, 121)
    // 32 MiB offered; only what the windows and buffers take is ever handed on.
    for (let i = 0; i < 2048; i++) call.write(chunk, () => sent++)
    let last = -1
    await waitFor(() => {
      const now = sent
      const still = now === last && now > 0
      last = now
      return still
    }, 'the client stopped sending', 10_000, 200)
    expect(sent * chunk.length, 'bytes the client got rid of while the instance reads nothing').to.be.below(4 * 1024 * 1024)
    call.cancel()
  })

  it('holds a server stream to the flow-control windows when its client stops reading', async () => {
    const a = await instance('a')
    const p = await proxy({ a: h2c(a) })
    const c = client(p.port)
    const call = c.makeServerStreamRequest('/test.Echo/Stream', raw.serialize, raw.deserialize, Buffer.from('flood'), new grpc.Metadata(), {})
    call.on('error', () => {})
    await new Promise((resolve) => call.once('data', resolve))
    call.pause()
    await waitFor(() => a.floodStalled, 'the instance felt backpressure')
    // Let whatever is in flight settle: the count stops growing once every window is full.
    let last = -1
    await waitFor(() => {
      const now = a.floodWritten
      const still = now === last
      last = now
      return still
    }, 'the instance stopped writing', 10_000, 200)
    // Bounded by windows and stream buffers (client, proxy both sides, instance), not by the stream's length.
    expect(a.floodWritten * 16 * 1024, 'bytes written while the client reads nothing').to.be.below(4 * 1024 * 1024)
    call.cancel()
    await waitFor(() => a.cancelled === 1, 'cancelled')
  })
})
