// The upstream pool's decisions, driven against a scripted upstream on loopback (issue 22, the
// Stryker run over the HTTP layer): when a connection goes back to the pool and when it is closed
// (the settle rules), which answers are refused, what framing the pool writes, the queue, the
// keep-alive hint, and the one resend of a request a stale connection dropped. Fast and
// timing-free: every wait is on an event or a poll with a deadline, and the pool's own clocks
// (sweep, expireWaiting) are called with a chosen `now`.

import { expect } from 'chai'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { Readable } from 'node:stream'
import type { UpstreamError } from '../../lib/errors.js'
import type { ResponseHead } from '../../lib/http/h1/headers.js'
import { UpstreamClock, UpstreamPool, requestHead } from '../../lib/http/h1/upstream.js'
import type { AttemptControl, UpstreamRequest } from '../../lib/http/h1/upstream.js'
import { useClosers, waitFor } from '../support/helpers.js'

/** One connection the scripted upstream accepted, and the requests it read whole. */
interface Seen {
  readonly socket: net.Socket
  readonly requests: string[]
  closed: boolean
}

/** What the upstream does with a request: bytes to write, 'close' to drop the connection, null to hold it. */
type Script = (request: string, conn: number, index: number) => string | 'close' | null

/** The end of the request at the start of `text`, or -1 while it is not whole (held or chunked bodies). */
function requestEnd(text: string): number {
  const head = text.indexOf('\r\n\r\n')
  if (head < 0) return -1
  const length = /\r\ncontent-length: (\d+)\r\n/i.exec(text.slice(0, head + 2))
  if (length !== null) return text.length >= head + 4 + Number(length[1]) ? head + 4 + Number(length[1]) : -1
  if (/\r\ntransfer-encoding: chunked\r\n/i.test(text.slice(0, head + 2))) {
    const end = text.indexOf('\r\n0\r\n\r\n', head)
    return end < 0 ? -1 : end + 7
  }
  return head + 4
}

async function scripted(closers: (() => unknown)[], script: Script) {
  const seen: Seen[] = []
  const server = net.createServer((socket) => {
    const conn: Seen = { socket, requests: [], closed: false }
    const at = seen.push(conn) - 1
    let text = ''
    socket.setEncoding('latin1')
    socket.on('error', () => {})
    socket.on('close', () => (conn.closed = true))
    socket.on('data', (d: string) => {
      text += d
      for (let end = requestEnd(text); end >= 0; end = requestEnd(text)) {
        const req = text.slice(0, end)
        text = text.slice(end)
        conn.requests.push(req)
        const out = script(req, at, conn.requests.length - 1)
        if (out === 'close') socket.destroy()
        else if (out !== null) socket.write(out, 'latin1')
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  closers.push(() => {
    for (const c of seen) c.socket.destroy()
    return new Promise((resolve) => server.close(resolve))
  })
  return { port: (server.address() as net.AddressInfo).port, seen }
}

interface Result {
  readonly head: ResponseHead | null
  readonly body: string
  readonly error: UpstreamError | null
}

function request(over: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return { method: 'GET', path: '/', headers: [], body: null, contentLength: -1, headersTimeoutMs: 10_000, bodyTimeoutMs: 10_000, ...over }
}

/** Sends one request through the pool; resolves with the answer or the error that ended it. */
function attempt(pool: UpstreamPool, req: UpstreamRequest, opts: { take?: boolean; started?: (c: AttemptControl) => void } = {}): Promise<Result> {
  return new Promise((resolve) => {
    let head: ResponseHead | null = null
    let body = ''
    pool.dispatch(req, {
      onStart: (c) => opts.started?.(c),
      onHead: (h) => {
        head = h
        return opts.take ?? true
      },
      onBody: (chunk) => {
        body += chunk.toString('latin1')
        return true
      },
      holdsChunks: false,
      onEnd: () => resolve({ head, body, error: null }),
      onError: (err) => resolve({ head, body, error: err as UpstreamError }),
    })
  })
}

const OK = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'
/** The same answer as llhttp frames it: a head the plain parser leaves alone (a hop-by-hop TE). */
const OK_LLHTTP = 'HTTP/1.1 200 OK\r\nte: trailers\r\ncontent-length: 2\r\n\r\nok'
const OK_CHUNKED = 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'
const ANSWERS = { plain: OK, llhttp: OK_LLHTTP, chunked: OK_CHUNKED }

describe('the upstream pool', function () {
  // Stryker runs mocha with no timeout: a mutant that leaves an answer hanging would run into
  // Stryker's own, which restarts the worker (the most of a run's time, measured). A test here
  // takes well under a second: under Stryker a hang fails the test instead.
  if (process.env.STRYKER_MUTATOR_WORKER !== undefined) this.timeout(3_000)
  const closers = useClosers()

  function pool(port: number, over: { connections?: number; keepAliveTimeoutMs?: number } = {}): UpstreamPool {
    const clock = new UpstreamClock()
    const p = new UpstreamPool({ host: '127.0.0.1', port, connections: over.connections ?? 4, keepAliveTimeoutMs: over.keepAliveTimeoutMs ?? 60_000, connectTimeoutMs: 5_000, clock, tls: null })
    // Not awaited: a request still out would hold close() until the upstream's sockets close,
    // which the upstream's own closer (run next) does.
    closers.push(() => {
      void p.close()
      clock.stop()
    })
    return p
  }

  for (const [path, answer] of Object.entries(ANSWERS)) {
    it(`sends the next request on the same connection after a clean keep-alive answer (${path} path)`, async () => {
      const up = await scripted(closers, () => answer)
      const p = pool(up.port)
      for (let i = 0; i < 3; i++) {
        const r = await attempt(p, request())
        expect(r.error).to.equal(null)
        expect([r.head!.status, r.body]).to.deep.equal([200, 'ok'])
      }
      expect(up.seen.map((c) => c.requests.length)).to.deep.equal([3])
    })

    it(`never reuses a connection whose answer had bytes behind it, whole or partial (${path} path)`, async () => {
      for (const behind of ['HTT', 'X', OK]) {
        const up = await scripted(closers, (_req, conn) => (conn === 0 ? answer + behind : answer))
        const p = pool(up.port)
        const first = await attempt(p, request())
        expect([first.head!.status, first.body, first.error]).to.deep.equal([200, 'ok', null])
        const second = await attempt(p, request())
        expect([second.head!.status, second.body, second.error], JSON.stringify(behind)).to.deep.equal([200, 'ok', null])
        expect(up.seen.map((c) => c.requests.length), JSON.stringify(behind)).to.deep.equal([1, 1])
        await waitFor(() => up.seen[0]!.closed, 'the first connection closed')
      }
    })
  }

  it('never reuses a connection after a HEAD answer, a 1xx, Connection: close or an HTTP/1.0 answer without keep-alive', async () => {
    const cases: [string, Partial<UpstreamRequest>][] = [
      ['HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n', { method: 'HEAD' }],
      ['HTTP/1.1 100 Continue\r\n\r\n' + OK, {}],
      ['HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n' + OK_CHUNKED, {}],
      ['HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok', {}],
      ['HTTP/1.1 200 OK\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n', {}],
      ['HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok', {}],
    ]
    for (const [answer, over] of cases) {
      const up = await scripted(closers, (_req, conn) => (conn === 0 ? answer : OK))
      const p = pool(up.port)
      const first = await attempt(p, request(over))
      expect([first.head!.status, first.error], answer).to.deep.equal([200, null])
      expect(first.body, answer).to.equal(over.method === 'HEAD' ? '' : 'ok')
      const second = await attempt(p, request())
      expect([second.head!.status, second.body], answer).to.deep.equal([200, 'ok'])
      expect(up.seen.map((c) => c.requests.length), answer).to.deep.equal([1, 1])
    }
  })

  it('closes an idle pooled connection that receives bytes nobody asked for, and sends the next request on a new one', async () => {
    const up = await scripted(closers, () => OK)
    const p = pool(up.port)
    expect((await attempt(p, request())).body).to.equal('ok')
    up.seen[0]!.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray')
    await waitFor(() => up.seen[0]!.closed, 'the idle connection closed')
    const second = await attempt(p, request())
    expect([second.head!.status, second.body]).to.deep.equal([200, 'ok'])
    expect(up.seen.map((c) => c.requests.length)).to.deep.equal([1, 1])
  })

  it('refuses malformed answers as resets, on both parser paths, before any byte goes on', async () => {
    const bad = [
      'HTTP/1.1 099 Low\r\ncontent-length: 2\r\n\r\nok',
      'HTTP/1.1 1000 High\r\ncontent-length: 2\r\n\r\nok',
      'HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n',
      'HTTP/1.1 101 Switching Protocols\r\n\r\n',
      'HTTP/1.1 200 O\x01K\r\ncontent-length: 2\r\n\r\nok',
      'HTTP/1.1 200 O\x7fK\r\ncontent-length: 2\r\n\r\nok',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: ,chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n2\r\nok\r\n0\r\n\r\n',
      'HTTP/1.1 200 OK\r\nte: trailers\r\ncontent-length: 9007199254740992\r\n\r\nok',
      'HTTP/2.0 200 OK\r\ncontent-length: 2\r\n\r\nok',
      'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok',
      'HTTX/1.1 200 OK\r\n\r\n',
    ]
    for (const answer of bad) {
      const up = await scripted(closers, () => answer)
      const r = await attempt(pool(up.port), request())
      expect(r.error?.kind, JSON.stringify(answer)).to.equal('reset')
      expect(r.error?.responseStarted, JSON.stringify(answer)).to.equal(false)
      expect(r.head, JSON.stringify(answer)).to.equal(null)
    }
  })

  it('takes a reason phrase of visible characters, SP and HTAB, and statuses 100 to 999', async () => {
    for (const answer of ['HTTP/1.1 200 All\tfine here ~é\r\ncontent-length: 2\r\n\r\nok', 'HTTP/1.1 999 Odd\r\nte: trailers\r\ncontent-length: 2\r\n\r\nok', 'HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\nok']) {
      const up = await scripted(closers, () => answer)
      const r = await attempt(pool(up.port), request())
      expect([r.error, r.body], JSON.stringify(answer)).to.deep.equal([null, 'ok'])
    }
  })

  it('ends the attempt as a status failure when the sink drops the head, and closes that connection', async () => {
    for (const answer of [OK, OK_LLHTTP, OK_CHUNKED]) {
      const up = await scripted(closers, () => answer)
      const p = pool(up.port)
      const r = await attempt(p, request(), { take: false })
      expect([r.error?.kind, r.error?.responseStarted, r.body]).to.deep.equal(['status', false, ''])
      await waitFor(() => up.seen[0]!.closed, 'the connection closed')
    }
  })

  it('passes a body of a 204 or a 304 on as nothing, and reads the next answer on the same connection', async () => {
    for (const status of ['204 No Content', '304 Not Modified']) {
      const up = await scripted(closers, (_req, _conn, i) => (i === 0 ? `HTTP/1.1 ${status}\r\ncontent-length: 5\r\n\r\n` : OK))
      const p = pool(up.port)
      const first = await attempt(p, request())
      expect([first.error, first.body]).to.deep.equal([null, ''])
      const second = await attempt(p, request())
      expect([second.error, second.body]).to.deep.equal([null, 'ok'])
      expect(up.seen.map((c) => c.requests.length)).to.deep.equal([2])
    }
  })

  it('reads a close-delimited body to the end and does not keep the connection', async () => {
    const up = await scripted(closers, (_req, conn) => (conn === 0 ? 'HTTP/1.1 200 OK\r\n\r\nall of it' : OK))
    const p = pool(up.port)
    const first = attempt(p, request())
    await waitFor(() => up.seen[0]?.requests.length === 1, 'the request')
    up.seen[0]!.socket.end()
    expect((await first).body).to.equal('all of it')
    expect((await attempt(p, request())).body).to.equal('ok')
    expect(up.seen.length).to.equal(2)
  })

  it('fails an answer the upstream cut short as a reset that started the response', async () => {
    for (const answer of ['HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nok', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n']) {
      const up = await scripted(closers, () => answer)
      const p = pool(up.port)
      const r = attempt(p, request())
      await waitFor(() => up.seen[0]?.requests.length === 1, 'the request')
      await waitFor(() => up.seen[0]!.socket.bytesWritten === answer.length, 'the answer written')
      up.seen[0]!.socket.end()
      const got = await r
      expect([got.error?.kind, got.error?.responseStarted, got.body], answer).to.deep.equal(['reset', true, 'ok'])
    }
  })

  it('keeps an idle connection for the keep-alive timeout, shortened to a second under what the upstream allows', async () => {
    for (const [hint, keptMs] of [['', 60_000], ['keep-alive: timeout=5\r\n', 4_000], ['keep-alive: timeout=100\r\n', 60_000]] as const) {
      for (const framing of ['content-length: 2\r\n\r\nok', 'transfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n']) {
        const up = await scripted(closers, () => `HTTP/1.1 200 OK\r\n${hint}${framing}`)
        const p = pool(up.port)
        expect((await attempt(p, request())).body).to.equal('ok')
        const idleFrom = performance.now()
        p.sweep(idleFrom + keptMs - 100)
        expect((await attempt(p, request())).body).to.equal('ok')
        expect(up.seen.map((c) => c.requests.length), hint).to.deep.equal([2])
        p.sweep(performance.now() + keptMs)
        await waitFor(() => up.seen[0]!.closed, 'the idle connection swept')
        expect((await attempt(p, request())).body).to.equal('ok')
        expect(up.seen.length).to.equal(2)
      }
    }
  })

  it('does not pool a connection the upstream keeps for a second or less (Keep-Alive: timeout=1)', async () => {
    const up = await scripted(closers, () => 'HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-length: 2\r\n\r\nok')
    const p = pool(up.port)
    expect((await attempt(p, request())).body).to.equal('ok')
    expect((await attempt(p, request())).body).to.equal('ok')
    expect(up.seen.map((c) => c.requests.length)).to.deep.equal([1, 1])
  })

  it('queues requests past its connection limit in order, and fails one still queued at its head deadline', async () => {
    const up = await scripted(closers, () => null)
    const p = pool(up.port, { connections: 1 })
    const a = attempt(p, request({ path: '/a' }))
    const b = attempt(p, request({ path: '/b', headersTimeoutMs: 60_000 }))
    const c = attempt(p, request({ path: '/c', headersTimeoutMs: 1_000 }))
    await waitFor(() => up.seen[0]?.requests.length === 1, 'the first request')
    expect(p.expireWaiting(performance.now())).to.equal(true)
    expect(p.expireWaiting(performance.now() + 2_000)).to.equal(true)
    const failed = await c
    expect([failed.error?.kind, failed.error?.responseStarted]).to.deep.equal(['timeout', false])
    up.seen[0]!.socket.write(OK)
    expect((await a).body).to.equal('ok')
    await waitFor(() => up.seen[0]!.requests.length === 2, 'the queued request on the freed connection')
    expect(up.seen[0]!.requests[1]!.startsWith('GET /b ')).to.equal(true)
    expect(p.expireWaiting(performance.now() + 120_000)).to.equal(false)
    up.seen[0]!.socket.write(OK)
    expect((await b).body).to.equal('ok')
    expect(up.seen.length).to.equal(1)
  })

  it('drops a queued request the client abandoned, and never sends it', async () => {
    const up = await scripted(closers, (req) => (req.startsWith('GET /a ') ? null : OK))
    const p = pool(up.port, { connections: 1 })
    const a = attempt(p, request({ path: '/a' }))
    let control: AttemptControl | null = null
    const b = attempt(p, request({ path: '/b' }), { started: (c) => (control = c) })
    const gone = new Error('client went away')
    control!.abort(gone)
    control!.abort(gone)
    expect((await b).error).to.equal(gone)
    await waitFor(() => up.seen[0]?.requests.length === 1, 'the first request')
    up.seen[0]!.socket.write(OK)
    expect((await a).body).to.equal('ok')
    expect((await attempt(p, request({ path: '/c' }))).body).to.equal('ok')
    expect(up.seen[0]!.requests.map((r) => r.split(' ')[1])).to.deep.equal(['/a', '/c'])
  })

  it('opens a new connection for a queued request when a busy one closes', async () => {
    const up = await scripted(closers, (_req, conn) => (conn === 0 ? 'close' : OK))
    const p = pool(up.port, { connections: 1 })
    const [a, b] = await Promise.all([attempt(p, request({ method: 'POST', body: [Buffer.from('x')] })), attempt(p, request())])
    expect(a.error?.kind).to.equal('reset')
    expect(b.body).to.equal('ok')
    expect(up.seen.length).to.equal(2)
  })

  it('sends an idempotent request again on a fresh connection when a reused one was closed under it, and nothing else', async () => {
    for (const [over, resent] of [
      [{}, true],
      [{ method: 'PUT', body: [Buffer.from('x')] }, true],
      [{ method: 'POST', body: [Buffer.from('x')] }, false],
      [{ method: 'PUT', body: Readable.from([Buffer.from('x')]), contentLength: 1 }, false],
    ] as [Partial<UpstreamRequest>, boolean][]) {
      const up = await scripted(closers, (_req, conn, i) => (conn === 0 && i === 1 ? 'close' : OK))
      const p = pool(up.port)
      expect((await attempt(p, request())).body).to.equal('ok')
      const r = await attempt(p, request(over))
      if (resent) {
        expect([r.error, r.body], over.method).to.deep.equal([null, 'ok'])
        expect(up.seen.map((c) => c.requests.length), over.method).to.deep.equal([2, 1])
      } else {
        expect([r.error?.kind, r.error?.responseStarted], over.method).to.deep.equal(['reset', false])
        expect(up.seen.length, over.method).to.equal(1)
      }
    }
  })

  it('does not send again a request whose answer had begun when the connection closed', async () => {
    const up = await scripted(closers, (_req, conn, i) => (conn === 0 && i === 1 ? 'HTTP/1.1 20' : OK))
    const p = pool(up.port)
    expect((await attempt(p, request())).body).to.equal('ok')
    const r = attempt(p, request())
    await waitFor(() => up.seen[0]!.socket.bytesWritten > OK.length, 'the partial answer written')
    up.seen[0]!.socket.destroy()
    expect((await r).error?.kind).to.equal('reset')
    expect(up.seen.length).to.equal(1)
  })

  it('writes its own framing: a Content-Length of the held body, 0 for an empty declared body, chunked for a streamed one of unknown length', async () => {
    const up = await scripted(closers, () => OK)
    const p = pool(up.port)
    const cases: [Partial<UpstreamRequest>, string][] = [
      [{}, 'GET / HTTP/1.1\r\nhost: 127.0.0.1:PORT\r\n\r\n'],
      [{ method: 'POST', contentLength: 0 }, 'POST / HTTP/1.1\r\nhost: 127.0.0.1:PORT\r\ncontent-length: 0\r\n\r\n'],
      [{ method: 'POST', body: [Buffer.from('ab'), Buffer.from('cde')], contentLength: 5 }, 'POST / HTTP/1.1\r\nhost: 127.0.0.1:PORT\r\ncontent-length: 5\r\n\r\nabcde'],
      [{ method: 'POST', body: [], contentLength: -1 }, 'POST / HTTP/1.1\r\nhost: 127.0.0.1:PORT\r\ncontent-length: 0\r\n\r\n'],
      [{ method: 'POST', body: Readable.from([Buffer.from('ab'), Buffer.from('cde')]), contentLength: 5 }, 'POST / HTTP/1.1\r\nhost: 127.0.0.1:PORT\r\ncontent-length: 5\r\n\r\nabcde'],
      [{ method: 'POST', body: Readable.from([Buffer.from('ab'), Buffer.from('cdefghijklmnopq')]) }, 'POST / HTTP/1.1\r\nhost: 127.0.0.1:PORT\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\nf\r\ncdefghijklmnopq\r\n0\r\n\r\n'],
      [{ headers: ['Host', 'example.com', 'x-a', 'b'] }, 'GET / HTTP/1.1\r\nHost: example.com\r\nx-a: b\r\n\r\n'],
    ]
    for (const [over, wire] of cases) {
      const before = up.seen.reduce((n, c) => n + c.requests.length, 0)
      expect((await attempt(p, request(over))).body).to.equal('ok')
      const all = up.seen.flatMap((c) => c.requests)
      expect(all.length).to.equal(before + 1)
      expect(all[before]).to.equal(wire.replace('PORT', String(up.port)))
    }
  })

  it('fails a request whose answer head does not come by its deadline, and one whose body stalls past the body timeout', async () => {
    const up = await scripted(closers, (req) => (req.startsWith('GET /stall ') ? 'HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok' : null))
    const p = pool(up.port)
    const head = await attempt(p, request({ headersTimeoutMs: 100 }))
    expect([head.error?.kind, head.error?.responseStarted, head.head]).to.deep.equal(['timeout', false, null])
    const body = await attempt(p, request({ path: '/stall', bodyTimeoutMs: 100 }))
    expect([body.error?.kind, body.error?.responseStarted, body.body]).to.deep.equal(['timeout', true, 'ok'])
  })

  it('hands a sink that holds its chunks views that stay intact while later reads come in', async () => {
    // A 1 MiB body in many reads: each view handed on must keep its bytes, so every read after a
    // held one lands in a new buffer.
    const body = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < body.length; i++) body[i] = (i * 31 + (i >> 12)) & 0xff
    for (const head of ['HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n', 'HTTP/1.1 200 OK\r\nte: trailers\r\ncontent-length: 1048576\r\n\r\n']) {
      const up = await scripted(closers, () => null)
      const p = pool(up.port)
      const held: Buffer[] = []
      const done = new Promise<UpstreamError | null>((resolve) => {
        p.dispatch(request(), { onStart: () => {}, onHead: () => true, onBody: (c) => (held.push(c), true), holdsChunks: true, onEnd: () => resolve(null), onError: (e) => resolve(e as UpstreamError) })
      })
      await waitFor(() => up.seen[0]?.requests.length === 1, 'the request')
      up.seen[0]!.socket.write(head)
      for (let at = 0; at < body.length; at += 4096) up.seen[0]!.socket.write(body.subarray(at, at + 4096))
      expect(await done).to.equal(null)
      expect(held.length).to.be.above(1)
      expect(Buffer.concat(held).equals(body), head).to.equal(true)
    }
  })

  it('names the instance in a Host line only when the headers carry none', () => {
    expect(requestHead('GET', '/x', ['hostx', 'a', 'hos', 'b'], 'i:1')).to.equal('GET /x HTTP/1.1\r\nhostx: a\r\nhos: b\r\nhost: i:1\r\n')
    expect(requestHead('GET', '/x', ['HOST', 'h', 'x-y', 'z'], 'i:1')).to.equal('GET /x HTTP/1.1\r\nHOST: h\r\nx-y: z\r\n')
    expect(requestHead('GET', '/x', ['x-y', 'z', 'host', 'h'], 'i:1')).to.equal('GET /x HTTP/1.1\r\nx-y: z\r\nhost: h\r\n')
    expect(requestHead('GET', '/x', ['aaaa', 'z'], 'i:1')).to.equal('GET /x HTTP/1.1\r\naaaa: z\r\nhost: i:1\r\n')
  })

  it('closes idle connections at close(), lets the request in flight finish, and resolves once every connection is gone', async () => {
    const up = await scripted(closers, (_req, conn, i) => (conn === 0 && i === 0 ? OK : null))
    const p = pool(up.port)
    expect((await attempt(p, request())).body).to.equal('ok')
    const both = [attempt(p, request()), attempt(p, request())]
    await waitFor(() => up.seen.length === 2 && up.seen[0]!.requests.length === 2 && up.seen[1]!.requests.length === 1, 'both requests out')
    let closed = false
    const closing = p.close().then(() => (closed = true))
    expect(p.closed).to.equal(true)
    up.seen[0]!.socket.write(OK)
    up.seen[1]!.socket.write(OK)
    expect((await both[0]!).body).to.equal('ok')
    expect((await both[1]!).body).to.equal('ok')
    await closing
    expect(closed).to.equal(true)
    await waitFor(() => up.seen.every((c) => c.closed), 'every connection closed')
  })

  it('does not send again a request whose fresh connection closed without an answer: only a reused one may be stale', async () => {
    const up = await scripted(closers, (_req, conn) => (conn === 0 ? 'close' : OK))
    const r = await attempt(pool(up.port), request())
    expect([r.error?.kind, r.error?.responseStarted]).to.deep.equal(['reset', false])
    expect(up.seen.length).to.equal(1)
  })

  it('frames a body llhttp reads by its own Content-Length, whatever numbers the fields before it carry', async () => {
    for (const before of ['x-n: 5\r\n', 'x-n: 0\r\nx-m: 1\r\n', 'age: 1\r\n']) {
      const up = await scripted(closers, () => `HTTP/1.1 200 OK\r\n${before}te: trailers\r\ncontent-length: 2\r\n\r\nok`)
      const p = pool(up.port)
      for (let i = 0; i < 2; i++) expect(await attempt(p, request()), before).to.deep.include({ body: 'ok', error: null })
      expect(up.seen.length, before).to.equal(1)
    }
  })

  it('refuses on the llhttp path too the status lines and reasons the plain path refuses', async () => {
    for (const line of ['HTTP/1.1 200 O\x01K', 'HTTP/1.1 200 O\x7fK', 'HTTP/1.1 200 O\x0bK', 'HTTP/1.1 1000 High', 'HTTP/1.1 099 Low', 'HTTP/1.1 101 Switching Protocols']) {
      const up = await scripted(closers, () => `${line}\r\nte: trailers\r\ncontent-length: 2\r\n\r\nok`)
      const r = await attempt(pool(up.port), request())
      expect([r.error?.kind, r.head], JSON.stringify(line)).to.deep.equal(['reset', null])
    }
    for (const line of ['HTTP/1.1 200 \xfeOK\xff', 'HTTP/1.1 200 a\tb c', 'HTTP/1.1 999 Odd']) {
      const up = await scripted(closers, () => `${line}\r\nte: trailers\r\ncontent-length: 2\r\n\r\nok`)
      const r = await attempt(pool(up.port), request())
      expect([r.error, r.body], JSON.stringify(line)).to.deep.equal([null, 'ok'])
    }
  })
})
