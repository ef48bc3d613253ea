// The HTTP/2 upstream pool (issue 26 item 3) against real node:http2 servers on loopback port 0,
// h2c and TLS h2: multiplexing, a second session at the instance's stream limit, GOAWAY and
// resets classified for the retry policy, deadlines, flow control both ways, trailers, and an
// oversized header list refused as a 502-class error.

import { expect } from 'chai'
import { Buffer } from 'node:buffer'
import { readFileSync } from 'node:fs'
import http2 from 'node:http2'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import tls from 'node:tls'
import { UpstreamError } from '../../lib/errors.js'
import { isRetryable } from '../../lib/balancing/retry.js'
import type { ResponseHead } from '../../lib/http/h1/headers.js'
import { MAX_HEADER_BYTES } from '../../lib/http/h1/headers.js'
import type { AttemptControl, UpstreamRequest } from '../../lib/http/h1/upstream.js'
import { H2UpstreamPool } from '../../lib/http/h2/upstream-pool.js'
import type { H2PoolOptions } from '../../lib/http/h2/upstream-pool.js'
import { UnprocessedError } from '../../lib/http/transport.js'
import type { TransportSink } from '../../lib/http/transport.js'
import { useCerts } from '../support/certs.js'
import { deadPort, useClosers, waitFor } from '../support/helpers.js'
import type { Closers } from '../support/helpers.js'

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_REFUSED_STREAM, NGHTTP2_NO_ERROR } = http2.constants

type StreamHandler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void

interface H2Instance {
  readonly port: number
  /** Sessions the instance has accepted so far. */
  sessions(): number
}

async function h2Instance(closers: Closers, handler: StreamHandler, opts: { secure?: { cert: Buffer; key: Buffer }; settings?: http2.Settings } = {}): Promise<H2Instance> {
  const live = new Set<http2.ServerHttp2Session>()
  let opened = 0
  const settings = opts.settings ?? {}
  const server = opts.secure === undefined ? http2.createServer({ settings }) : http2.createSecureServer({ ...opts.secure, settings })
  server.on('session', (s) => {
    opened++
    live.add(s)
    s.on('error', () => {})
    s.on('close', () => live.delete(s))
  })
  server.on('sessionError', () => {})
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {})
    handler(stream, headers)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  closers.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r())
        for (const s of live) s.destroy()
      }),
  )
  return { port: (server.address() as AddressInfo).port, sessions: () => opened }
}

function request(over: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return { method: 'GET', path: '/', headers: [], body: null, contentLength: -1, headersTimeoutMs: 10_000, bodyTimeoutMs: 10_000, ...over }
}

/** A sink that records what the pool hands it; `accepting` false pushes back on every chunk. */
class Recorder implements TransportSink {
  readonly holdsChunks = false
  control: AttemptControl | null = null
  head: ResponseHead | null = null
  readonly chunks: Buffer[] = []
  received = 0
  trailers: readonly string[] | null = null
  readonly events: string[] = []
  accepting = true
  readonly done: Promise<Error | null>
  #settle!: (err: Error | null) => void

  constructor() {
    this.done = new Promise((r) => (this.#settle = r))
  }

  onStart(control: AttemptControl): void {
    this.control = control
  }

  onHead(head: ResponseHead): boolean {
    this.events.push('head')
    this.head = head
    return true
  }

  onBody(chunk: Buffer): boolean {
    this.chunks.push(Buffer.from(chunk))
    this.received += chunk.length
    return this.accepting
  }

  onTrailers(trailers: readonly string[]): void {
    this.events.push('trailers')
    this.trailers = trailers
  }

  onEnd(): void {
    this.events.push('end')
    this.#settle(null)
  }

  onError(err: Error): void {
    this.events.push('error')
    this.#settle(err)
  }

  get body(): string {
    return Buffer.concat(this.chunks).toString()
  }
}

function send(pool: H2UpstreamPool, req: UpstreamRequest = request()): Recorder {
  const r = new Recorder()
  pool.dispatch(req, r)
  return r
}

function pool(closers: Closers, port: number, over: Partial<H2PoolOptions> = {}): H2UpstreamPool {
  const p = new H2UpstreamPool({ host: '127.0.0.1', port, protocol: 'h2c', tls: null, ...over })
  // Closed after the instances (closers run last-in first-out): close() waits for streams in flight.
  closers.unshift(() => p.close())
  return p
}

const RETRY_ANY = { on: ['connect-failure', 'reset', 'timeout', 'gateway-error'] as const, nonIdempotent: false }

describe('HTTP/2 upstream pool (real node:http2 instances)', function () {
  const closers = useClosers()
  const certs = useCerts()
  const other = useCerts()

  it('sends a request over h2c with prior knowledge and hands on head, body and trailers in order', async () => {
    let seen: http2.IncomingHttpHeaders = {}
    const inst = await h2Instance(closers, (stream, headers) => {
      seen = headers
      stream.respond({ ':status': 201, 'x-up': 'yes', 'content-type': 'text/plain' }, { waitForTrailers: true })
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc', 'grpc-status': '0' }))
      stream.end('created')
    })
    const p = pool(closers, inst.port)
    const r = send(p, request({ method: 'PUT', path: '/things/1?x=y', headers: ['Host', 'svc.example', 'X-Id', '7', 'Connection', 'close', 'TE', 'trailers'], body: [Buffer.from('ab'), Buffer.from('c')] }))
    expect(await r.done).to.equal(null)
    expect(r.events).to.deep.equal(['head', 'trailers', 'end'])
    expect([r.head!.status, r.head!.text, r.head!.header('x-up'), r.body]).to.deep.equal([201, 'Created', 'yes', 'created'])
    expect(r.trailers).to.deep.equal(['x-checksum', 'abc', 'grpc-status', '0'])
    expect([seen[':method'], seen[':path'], seen[':scheme'], seen[':authority'], seen['x-id'], seen.te, seen['content-length'], seen.connection]).to.deep.equal(['PUT', '/things/1?x=y', 'http', 'svc.example', '7', 'trailers', '3', undefined])
  })

  it('streams a request body at the window\'s pace, whole, and passes an interim 103 by', async () => {
    const inst = await h2Instance(closers, (stream, headers) => {
      let n = 0
      stream.on('data', (c: Buffer) => (n += c.length))
      stream.on('end', () => {
        stream.additionalHeaders({ ':status': 103, link: '</a.css>; rel=preload' })
        stream.respond({ ':status': 200 })
        stream.end(`${n} ${String(headers['content-length'])}`)
      })
    })
    const p = pool(closers, inst.port)
    const total = 3 * 1024 * 1024 + 7
    const body = Readable.from((function* () {
      for (let left = total; left > 0; left -= 64 * 1024) yield Buffer.alloc(Math.min(left, 64 * 1024), 0x63)
    })())
    const r = send(p, request({ method: 'POST', body, contentLength: total }))
    expect(await r.done).to.equal(null)
    expect([r.head!.status, r.body, r.events]).to.deep.equal([200, `${total} ${total}`, ['head', 'end']])
  })

  it('speaks h2 over TLS verified against the service CA, and refuses an instance its CA does not sign', async () => {
    const secure = { cert: readFileSync(certs.cert), key: readFileSync(certs.key) }
    let scheme: string | undefined
    const inst = await h2Instance(
      closers,
      (stream, headers) => {
        scheme = headers[':scheme'] as string
        stream.respond({ ':status': 200 })
        stream.end('secure')
      },
      { secure },
    )
    const p = pool(closers, inst.port, { protocol: 'h2', tls: { context: tls.createSecureContext({ ca: certs.ca }), servername: undefined } })
    const r = send(p)
    expect(await r.done).to.equal(null)
    expect([r.body, scheme]).to.deep.equal(['secure', 'https'])

    const untrusted = pool(closers, inst.port, { protocol: 'h2', tls: { context: tls.createSecureContext({ ca: other.ca }), servername: undefined } })
    const bad = send(untrusted)
    const err = (await bad.done) as UpstreamError
    expect(err).to.be.instanceOf(UpstreamError)
    expect([err.kind, err.statusCode]).to.deep.equal(['connect', 502])
  })

  it('refuses an instance that does not agree to h2 over ALPN (no silent fallback)', async () => {
    const h1 = tls.createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key), ALPNProtocols: ['http/1.1'] }, (s) => s.destroy())
    await new Promise<void>((r) => h1.listen(0, '127.0.0.1', r))
    closers.push(() => new Promise<void>((r) => h1.close(() => r())))
    const p = pool(closers, (h1.address() as AddressInfo).port, { protocol: 'h2', tls: { context: tls.createSecureContext({ ca: certs.ca }), servername: undefined } })
    const err = (await send(p).done) as UpstreamError
    expect(err.kind).to.equal('connect')
  })

  it('fails as a connect failure when the instance refuses the connection or never sends its SETTINGS', async () => {
    const refused = (await send(pool(closers, await deadPort(closers))).done) as UpstreamError
    expect([refused.kind, refused.statusCode, refused.responseStarted]).to.deep.equal(['connect', 502, false])
    // Accepts TCP and says nothing: the connect timeout, not the head deadline, ends the wait.
    const held = new Set<net.Socket>()
    const mute = net.createServer((s) => held.add(s))
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r))
    closers.push(
      () =>
        new Promise<void>((r) => {
          for (const s of held) s.destroy()
          mute.close(() => r())
        }),
    )
    const silent = (await send(pool(closers, (mute.address() as AddressInfo).port, { connectTimeoutMs: 100 }), request({ headersTimeoutMs: 60_000 })).done) as UpstreamError
    expect([silent.kind, silent.message]).to.deep.equal(['connect', 'upstream connect error (ETIMEDOUT)'])
  })

  it('holds to its own streams-per-session cap whatever the instance allows, and clamps hostile options', async () => {
    const held: http2.ServerHttp2Stream[] = []
    const inst = await h2Instance(closers, (stream) => {
      held.push(stream)
      if (held.length === 4)
        for (const s of held) {
          s.respond({ ':status': 200 })
          s.end('ok')
        }
    })
    // The instance allows 2^32-1 streams; ours allows 2 per session.
    const p = pool(closers, inst.port, { maxStreamsPerSession: 2 })
    const rs = Array.from({ length: 4 }, () => send(p))
    expect(await Promise.all(rs.map((r) => r.done))).to.deep.equal([null, null, null, null])
    expect(inst.sessions()).to.equal(2)
    // Out-of-range numbers are clamped where they enter, not trusted: the pool still serves.
    const hostile = pool(closers, inst.port, { sessions: -5, maxStreamsPerSession: Number.NaN, keepAliveTimeoutMs: -1, connectTimeoutMs: Infinity, maxHeaderListBytes: 1e15, maxHeaders: 0, maxSessionMemoryMb: -1 })
    held.length = 0
    const more = Array.from({ length: 4 }, () => send(hostile))
    expect(await Promise.all(more.map((r) => r.done))).to.deep.equal([null, null, null, null])
  })

  it('carries many concurrent streams over one session', async () => {
    const inst = await h2Instance(closers, (stream, headers) => {
      stream.respond({ ':status': 200 })
      stream.end(String(headers[':path']))
    })
    const p = pool(closers, inst.port)
    const rs = Array.from({ length: 60 }, (_, i) => send(p, request({ path: `/${i}` })))
    const errs = await Promise.all(rs.map((r) => r.done))
    expect(errs.every((e) => e === null)).to.equal(true)
    expect(rs.map((r) => r.body)).to.deep.equal(rs.map((_, i) => `/${i}`))
    expect(inst.sessions()).to.equal(1)
    expect(p.stats()).to.deep.include({ connections: 1, active: 0, queued: 0 })
  })

  it('opens another session when each is at the SETTINGS_MAX_CONCURRENT_STREAMS the instance allows, and no more', async () => {
    const held: http2.ServerHttp2Stream[] = []
    // Answers only once 6 streams are open at once: impossible over one session of 3.
    const inst = await h2Instance(
      closers,
      (stream) => {
        held.push(stream)
        if (held.length === 6)
          for (const s of held) {
            s.respond({ ':status': 200 })
            s.end('ok')
          }
      },
      { settings: { maxConcurrentStreams: 3 } },
    )
    const p = pool(closers, inst.port, { sessions: 4 })
    const rs = Array.from({ length: 6 }, () => send(p))
    expect(await Promise.all(rs.map((r) => r.done))).to.deep.equal([null, null, null, null, null, null])
    expect(inst.sessions()).to.equal(2)
  })

  it('queues beyond the last session and fails the wait as a timeout at the head deadline', async () => {
    const inst = await h2Instance(closers, () => {}, { settings: { maxConcurrentStreams: 1 } })
    const p = pool(closers, inst.port, { sessions: 1 })
    const first = send(p, request({ headersTimeoutMs: 60_000 }))
    const second = send(p, request({ headersTimeoutMs: 100 }))
    const err = (await second.done) as UpstreamError
    expect([err.kind, err.code]).to.deep.equal(['timeout', 'ZP_ERR_UPSTREAM_TIMEOUT'])
    expect(p.stats().active).to.equal(1)
    first.control!.abort(new Error('test done'))
    await first.done
  })

  it('fails streams above a GOAWAY last-stream-id as not processed, retryable whatever the method, and finishes the others', async () => {
    const streams: http2.ServerHttp2Stream[] = []
    const inst = await h2Instance(closers, (stream) => {
      streams.push(stream)
      if (streams.length > 3) {
        stream.respond({ ':status': 200 })
        stream.end('next')
      }
      if (streams.length !== 3) return
      // Only the first stream was processed; the other two (higher ids) never will be.
      stream.session!.goaway(NGHTTP2_NO_ERROR, streams[0]!.id!)
      streams[0]!.respond({ ':status': 200 })
      streams[0]!.end('first')
    })
    const p = pool(closers, inst.port)
    const rs = ['GET', 'POST', 'PATCH'].map((method) => send(p, request({ method })))
    const [a, b, c] = await Promise.all(rs.map((r) => r.done))
    expect(a).to.equal(null)
    expect(rs[0]!.body).to.equal('first')
    for (const [err, method] of [
      [b, 'POST'],
      [c, 'PATCH'],
    ] as const) {
      expect(err).to.be.instanceOf(UnprocessedError)
      const e = err as UnprocessedError
      expect([e.kind, e.responseStarted]).to.deep.equal(['connect', false])
      expect(isRetryable(RETRY_ANY, { method, kind: e.kind, idempotencyKey: false, replayable: true, responseStarted: false })).to.equal(true)
    }
    // The drained session takes nothing new: the next request opens another.
    const next = send(p)
    expect(await next.done).to.equal(null)
    expect(inst.sessions()).to.equal(2)
  })

  it('after a GOAWAY with an error code, fails streams above its last-stream-id as not processed and those below as reset', async () => {
    const ids: number[] = []
    const inst = await h2Instance(closers, (stream) => {
      ids.push(stream.id!)
      // The first stream was (in the instance's words) processed; the second was not.
      if (ids.length === 2) stream.session!.goaway(NGHTTP2_INTERNAL_ERROR, ids[0]!)
    })
    const p = pool(closers, inst.port)
    const [first, second] = (await Promise.all([send(p, request({ method: 'POST' })), send(p, request({ method: 'POST' }))].map((r) => r.done))) as UpstreamError[]
    expect([first instanceof UnprocessedError, first!.kind]).to.deep.equal([false, 'reset'])
    expect([second instanceof UnprocessedError, second!.kind]).to.deep.equal([true, 'connect'])
  })

  it('classifies a reset from the instance: REFUSED_STREAM was not processed, any other code is a reset', async () => {
    const codes = [NGHTTP2_REFUSED_STREAM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_CANCEL, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_ENHANCE_YOUR_CALM]
    const inst = await h2Instance(closers, (stream, headers) => stream.close(Number(headers['x-code'])))
    const p = pool(closers, inst.port)
    for (const code of codes) {
      const err = (await send(p, request({ method: 'POST', headers: ['x-code', String(code)] })).done) as UpstreamError
      expect(err, `code ${code}`).to.be.instanceOf(UpstreamError)
      if (code === NGHTTP2_REFUSED_STREAM) expect(err, `code ${code}`).to.be.instanceOf(UnprocessedError)
      else expect([err instanceof UnprocessedError, err.kind, err.statusCode], `code ${code}`).to.deep.equal([false, 'reset', 502])
    }
    // A reset mid-body: the answer had started, nothing can be retried.
    const mid = await h2Instance(closers, (stream) => {
      stream.respond({ ':status': 200 })
      // destroy(), not close(code): close() ends the stream cleanly first when data is pending.
      stream.write('part', () => stream.destroy(new Error('instance failed mid-answer')))
    })
    const r = send(pool(closers, mid.port))
    const err = (await r.done) as UpstreamError
    expect([err.kind, err.responseStarted, r.events[0]]).to.deep.equal(['reset', true, 'head'])
  })

  it('refuses an answer whose header list is past the HTTP/1.1 head limit as a 502-class error', async () => {
    const inst = await h2Instance(closers, (stream, headers) => {
      const n = Number(headers['x-n'])
      stream.respond({ ':status': 200, 'x-big': 'v'.repeat(n) })
      stream.end('x')
    })
    // A pool each: past some sizes node:http2 ends the whole session, and a request racing that
    // end would fail as not processed (correctly, but not what this test is about).
    for (const n of [MAX_HEADER_BYTES - 100, MAX_HEADER_BYTES, 4 * MAX_HEADER_BYTES]) {
      const err = (await send(pool(closers, inst.port), request({ headers: ['x-n', String(n)] })).done) as UpstreamError
      expect(err, String(n)).to.be.instanceOf(UpstreamError)
      expect([err.statusCode, err.responseStarted], String(n)).to.deep.equal([502, false])
    }
    // Within the limit (the block counted with its :status and date fields) it passes.
    const fine = send(pool(closers, inst.port), request({ headers: ['x-n', '1000'] }))
    expect(await fine.done).to.equal(null)
  })

  it('refuses a DATA length that disagrees with content-length', async () => {
    const inst = await h2Instance(closers, (stream, headers) => {
      stream.respond({ ':status': 200, 'content-length': String(headers['x-declared']) })
      stream.end('12345')
    })
    const p = pool(closers, inst.port)
    for (const declared of ['3', '9']) {
      const err = (await send(p, request({ headers: ['x-declared', declared] })).done) as UpstreamError
      expect(err, declared).to.be.instanceOf(UpstreamError)
      expect(err.kind, declared).to.equal('reset')
    }
    expect(await send(p, request({ headers: ['x-declared', '5'] })).done).to.equal(null)
  })

  it('fails a stream with no head by the head deadline and one whose body stalls by the body timeout, cancelling each', async () => {
    const rst: number[] = []
    const inst = await h2Instance(closers, (stream, headers) => {
      stream.on('close', () => rst.push(stream.rstCode ?? -1))
      if (headers[':path'] === '/stall') {
        stream.respond({ ':status': 200 })
        stream.write('some')
      }
    })
    const p = pool(closers, inst.port)
    const head = (await send(p, request({ headersTimeoutMs: 100 })).done) as UpstreamError
    expect([head.kind, head.responseStarted]).to.deep.equal(['timeout', false])
    const body = (await send(p, request({ path: '/stall', bodyTimeoutMs: 100 })).done) as UpstreamError
    expect([body.kind, body.responseStarted]).to.deep.equal(['timeout', true])
    await waitFor(() => rst.length === 2, 'both streams closed at the instance')
    expect(rst).to.deep.equal([NGHTTP2_CANCEL, NGHTTP2_CANCEL])
  })

  it('sends RST_STREAM(CANCEL) when the client goes away, and keeps the session for the other streams', async () => {
    const closed: number[] = []
    const inst = await h2Instance(closers, (stream, headers) => {
      stream.on('close', () => closed.push(stream.rstCode ?? -1))
      if (headers[':path'] === '/quick') {
        stream.respond({ ':status': 200 })
        stream.end('quick')
      }
    })
    const p = pool(closers, inst.port)
    const slow = send(p, request({ path: '/slow' }))
    await waitFor(() => p.stats().active === 1, 'the slow stream out')
    slow.control!.abort(new Error('client gone'))
    expect(((await slow.done) as Error).message).to.equal('client gone')
    await waitFor(() => closed.length === 1, 'the instance to see the reset')
    expect(closed).to.deep.equal([NGHTTP2_CANCEL])
    expect(await send(p, request({ path: '/quick' })).done).to.equal(null)
    expect(inst.sessions()).to.equal(1)
  })

  it('reads no more of a request body than the window of an instance that never reads it', async () => {
    let pulled = 0
    const piece = Buffer.alloc(16 * 1024, 0x61)
    const body = new Readable({
      read() {
        pulled += piece.length
        this.push(pulled > 64 * 1024 * 1024 ? null : piece)
      },
    })
    let instanceStream: http2.ServerHttp2Stream | null = null
    // The instance takes the stream and never reads it: its window stays shut.
    const inst = await h2Instance(closers, (stream) => {
      instanceStream = stream
      stream.pause()
    })
    const p = pool(closers, inst.port)
    const r = send(p, request({ method: 'POST', body, contentLength: -1 }))
    await waitFor(() => instanceStream !== null && body.isPaused(), 'the body paused by the stream window')
    expect(pulled).to.be.below(1024 * 1024)
    r.control!.abort(new Error('test done'))
    await r.done
  })

  it('stops reading an answer while the sink pushes back (the window stays shut), and takes the rest after resume()', async () => {
    const total = 4 * 1024 * 1024
    let session: http2.Http2Session | null = null
    /** Bytes node:http2 at the instance has handed on (a write's callback): what the window let through. */
    let flushed = 0
    const inst = await h2Instance(closers, (stream) => {
      session = stream.session!
      stream.respond({ ':status': 200, 'content-length': String(total) })
      const chunk = Buffer.alloc(16 * 1024, 0x62)
      let written = 0
      const pump = (): void => {
        while (written < total) {
          written += chunk.length
          if (!stream.write(chunk, () => (flushed += chunk.length))) {
            stream.once('drain', pump)
            return
          }
        }
        stream.end()
      }
      pump()
    })
    const p = pool(closers, inst.port)
    const r = new Recorder()
    r.accepting = false
    p.dispatch(request(), r)
    // Settled: nothing more got through during a PING round trip to the proxy and back.
    const ping = () => new Promise<void>((resolve) => session!.ping(() => resolve()))
    await waitFor(
      async () => {
        if (session === null || flushed === 0) return false
        const before = flushed
        await ping()
        await ping()
        return flushed === before
      },
      'the instance to be held by the flow-control window',
    )
    expect(flushed).to.be.below(1024 * 1024)
    expect(r.received).to.be.below(1024 * 1024)
    r.accepting = true
    r.control!.resume()
    expect(await r.done).to.equal(null)
    expect(r.received).to.equal(total)
  })

  it('closes idle sessions after the keep-alive timeout, and close() waits for streams in flight', async () => {
    let release: (() => void) | null = null
    const inst = await h2Instance(closers, (stream) => {
      release = () => {
        stream.respond({ ':status': 200 })
        stream.end('late')
      }
    })
    const p = pool(closers, inst.port, { keepAliveTimeoutMs: 1 })
    const r = send(p)
    await waitFor(() => release !== null, 'the stream at the instance')
    let closed = false
    const closing = p.close().then(() => (closed = true))
    expect(p.closed).to.equal(true)
    expect(closed).to.equal(false)
    release!()
    expect(await r.done).to.equal(null)
    await closing
    expect(p.stats()).to.deep.equal({ connections: 0, active: 0, queued: 0 })
    const late = (await send(p).done) as UpstreamError
    expect(late).to.be.instanceOf(UnprocessedError)
  })
})
