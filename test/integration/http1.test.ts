// The proxy's own HTTP/1.1 on the wire (lib/http/h1/): framing, keep-alive, pipelining, limits and
// upstream connection reuse, seen from raw client sockets and raw or node:http upstreams.

import { expect } from 'chai'
import net from 'node:net'
import { makeConfig, patterned, putNode, send, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'
import type { Handler } from '../support/helpers.js'
import { consumed, raw, rawUpstream } from '../support/wire.js'
import { KEEP_ALIVE_TIMEOUT_MS } from '../../lib/http/h1/front.js'

/**
 * One GET on a new connection, read as bytes until its Content-Length is in or the proxy closes.
 * `stallMs`: read nothing that long first, so the proxy's writes back up.
 */
function getBytes(port: number, stallMs = 0): Promise<{ head: string; body: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    const pieces: Buffer[] = []
    let got = 0
    let head: string | null = null
    let bodyAt = 0
    let length = -1
    const timer = setTimeout(() => reject(new Error(`no end in 20 s (${got} bytes)`)), 20_000)
    const finish = (closed: boolean) => {
      clearTimeout(timer)
      s.destroy()
      resolve({ head: head ?? '', body: Buffer.concat(pieces).subarray(bodyAt), closed })
    }
    if (stallMs > 0) {
      s.pause()
      setTimeout(() => s.resume(), stallMs)
    }
    s.on('data', (d: Buffer) => {
      pieces.push(d)
      got += d.length
      if (head === null) {
        const all = Buffer.concat(pieces)
        const end = all.indexOf('\r\n\r\n')
        if (end < 0) return
        head = all.subarray(0, end).toString('latin1')
        bodyAt = end + 4
        length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? -1)
      }
      if (length >= 0 && got - bodyAt >= length) finish(false)
    })
    s.on('close', () => finish(true))
    s.on('error', () => {})
  })
}

describe('HTTP/1.1 on the wire (real ZooKeeper, real upstreams)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  async function proxyTo(port: number, service: object = {}) {
    const path = uniquePath()
    await putNode(ctx.admin, `${path}/i-${port}`, { host: '127.0.0.1', port })
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path, ...service }]))
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    return p
  }

  async function upstream(handler?: Handler) {
    const u = await startUpstream('u', handler)
    closers.push(() => u.close())
    return u
  }

  it('answers pipelined requests on one connection in order', async () => {
    // The first answer is held until the proxy has read the second request too: both are in
    // its hands, and order on the wire must still be the requests' order.
    let client: net.Socket | undefined
    const u = await upstream((req, res) => {
      if (req.url === '/1') void consumed(client!, 'the proxy to read both requests').then(() => res.end('for /1'))
      else res.end(`for ${req.url}`)
    })
    const p = await proxyTo(u.port)
    const { got } = await raw(p.port, 'GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n', (g) => g.includes('for /2'), (c) => (client = c))
    expect(got.indexOf('for /1')).to.be.greaterThan(0)
    expect(got.indexOf('for /1')).to.be.lessThan(got.indexOf('for /2'))
    expect(got.match(/HTTP\/1\.1 200/g)).to.have.length(2)
  })

  it('answers 431 to a head over 16 KiB and closes, and keeps serving', async () => {
    const u = await upstream()
    const p = await proxyTo(u.port)
    const { got, closed } = await raw(p.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
    expect(closed).to.equal(true)
    expect(got).to.match(/^HTTP\/1\.1 431 /)
    expect(got).to.include('ZP_ERR_HEADERS_TOO_LARGE')
    expect(u.hits).to.equal(0)
    expect((await send(p.port)).status).to.equal(200)
  })

  it('re-frames a body of unknown length: chunked to HTTP/1.1, delimited by close to HTTP/1.0', async () => {
    // Part two is written only once the client has part one: two pieces, however busy the machine.
    let partTwo: () => void = () => {}
    const u = await upstream((_req, res) => {
      res.write('part one, ')
      new Promise<void>((r) => (partTwo = r)).then(() => res.end('part two'), () => {})
    })
    const p = await proxyTo(u.port)
    const v11 = await raw(p.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', (g) => {
      if (g.endsWith('part one, \r\n')) partTwo()
      return g.endsWith('0\r\n\r\n')
    })
    expect(v11.got).to.match(/\r\ntransfer-encoding: chunked\r\n/i)
    expect(v11.got).to.include('a\r\npart one, \r\n')
    expect(v11.got).to.include('8\r\npart two\r\n0\r\n\r\n')
    const v10 = await raw(p.port, 'GET / HTTP/1.0\r\nHost: x\r\n\r\n', (g) => {
      if (g.endsWith('part one, ')) partTwo()
      return false
    })
    expect(v10.closed).to.equal(true)
    expect(v10.got).to.match(/\r\nconnection: close\r\n/i)
    expect(v10.got).not.to.match(/transfer-encoding/i)
    expect(v10.got.endsWith('\r\n\r\npart one, part two')).to.equal(true)
  })

  it('keeps an HTTP/1.0 client that asks for keep-alive, and answers HEAD without a body', async () => {
    const u = await upstream((req, res) => {
      res.writeHead(200, { 'content-length': '5' })
      res.end(req.method === 'HEAD' ? undefined : 'hello')
    })
    const p = await proxyTo(u.port)
    const { got, closed } = await raw(p.port, 'HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', (g) => g.endsWith('hello'))
    expect(closed).to.equal(false)
    const [head, get] = got.split(/(?=HTTP\/1\.1 )/)
    expect(head).to.match(/\r\ncontent-length: 5\r\n/i)
    expect(head).to.match(/\r\nconnection: keep-alive\r\n\r\n$/i)
    expect(get).to.match(/\r\n\r\nhello$/)
  })

  it('reads an upstream answer delimited by its close', async () => {
    const up = await rawUpstream((s) => s.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end'))
    closers.push(() => up.close())
    const p = await proxyTo(up.port)
    const r = await send(p.port)
    expect(r.status).to.equal(200)
    expect(r.body).to.equal('until the end')
    expect((await send(p.port)).body).to.equal('until the end')
  })

  /**
   * Every connection answers its first request and drops the second without a word: what a
   * request meets when the upstream closed an idle connection just as it was sent.
   */
  async function dropsSecondOnEachConnection() {
    const up = await rawUpstream((s, n) => {
      if (n === 0) s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
      else s.destroy()
    })
    closers.push(() => up.close())
    return { up, p: await proxyTo(up.port, { retry: { attempts: 1 } }) }
  }

  it('sends a GET again on a fresh connection when a kept-alive one turns out closed', async () => {
    const { up, p } = await dropsSecondOnEachConnection()
    for (let i = 0; i < 3; i++) expect((await send(p.port)).status).to.equal(200)
    expect(up.connections).to.equal(3)
  })

  it('does not send a POST twice when its connection turns out closed', async () => {
    const { p } = await dropsSecondOnEachConnection()
    expect((await send(p.port, '/', { method: 'POST', body: 'a' })).status).to.equal(200)
    const second = await send(p.port, '/', { method: 'POST', body: 'b' })
    expect(second.status).to.equal(502)
    expect(JSON.parse(second.body).error).to.equal('ZP_ERR_UPSTREAM_RESET')
  })

  it('reuses an idle upstream connection while the Keep-Alive timeout the upstream announced leaves a second, and closes it itself', async () => {
    // The proxy keeps an idle connection 1 s less than the upstream says it will (a request sent on
    // a connection the upstream is closing fails): with timeout=3 it reuses it, and the upstream,
    // which never closes, sees the proxy close it; with timeout=1 (or 0) it never keeps one. Only
    // outcomes are judged, no clock.
    for (const [timeout, reused] of [[3, true], [1, false], [0, false]] as const) {
      let closedByProxy = 0
      const up = await rawUpstream((s, n) => {
        if (n === 0) s.once('end', () => closedByProxy++)
        s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=${timeout}\r\n\r\nok`)
      })
      closers.push(() => up.close())
      const p = await proxyTo(up.port)
      for (let i = 0; i < 2; i++) expect((await send(p.port)).status).to.equal(200)
      expect(up.connections, `timeout=${timeout}`).to.equal(reused ? 1 : 2)
      await waitFor(() => closedByProxy === up.connections, `the proxy to close its idle connections (timeout=${timeout})`)
    }
  })

  it('cuts the client connection when an upstream body stalls longer than bodyTimeoutMs', async () => {
    let n = 0
    const u = await upstream((_req, res) => {
      if (n++ > 0) return res.end('next')
      res.writeHead(200, { 'content-length': '100' })
      res.write('only the start')
    })
    // The request's own deadline is 30 s: a cut before it is the body timeout's.
    const p = await proxyTo(u.port, { bodyTimeoutMs: 300, timeoutMs: 30_000 })
    const { got, closed } = await raw(p.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    expect(closed).to.equal(true)
    expect(got).to.match(/^HTTP\/1\.1 200 /)
    expect(got.endsWith('only the start')).to.equal(true)
    expect((await send(p.port)).status).to.equal(200)
  })

  it('answers Expect: 100-continue itself before the body is sent', async () => {
    const u = await upstream((req, res) => {
      let n = 0
      req.on('data', (c: Buffer) => (n += c.length))
      req.on('end', () => res.end(`got ${n} and expect=${req.headers.expect ?? 'none'}`))
    })
    const p = await proxyTo(u.port)
    const s = net.connect(p.port, '127.0.0.1')
    let got = ''
    s.on('data', (d) => (got += d.toString('latin1')))
    s.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n')
    await waitFor(() => got.startsWith('HTTP/1.1 100 Continue\r\n\r\n'), 'the 100 Continue')
    s.write('body')
    await waitFor(() => got.includes('got 4 and expect=none'), 'the answer')
    s.destroy()
  })

  it('passes over 1xx informational answers to the final one', async () => {
    const u = await upstream((_req, res) => {
      res.writeEarlyHints({ link: '</a.css>; rel=preload' })
      res.end('final')
    })
    const p = await proxyTo(u.port)
    const r = await send(p.port)
    expect(r.status).to.equal(200)
    expect(r.body).to.equal('final')
  })

  it('passes on an answer that comes before the request body is all sent, then closes', async () => {
    const u = await upstream((_req, res) => {
      res.writeHead(413, { 'content-type': 'text/plain' })
      res.end('too big')
    })
    const p = await proxyTo(u.port)
    const head = 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n'
    const { got, closed } = await raw(p.port, [head, 'x'.repeat(200_000)])
    expect(closed).to.equal(true)
    expect(got).to.match(/^HTTP\/1\.1 413 /)
    expect(got).to.match(/\r\nconnection: close\r\n/i)
    expect(got).to.match(/\r\n\r\n7\r\ntoo big\r\n0\r\n\r\n$/)
    expect((await send(p.port)).status).to.equal(413)
  })

  it('keeps a client connection open for its next request, and closes it once left idle', async () => {
    const u = await upstream()
    const p = await proxyTo(u.port)
    const s = net.connect(p.port, '127.0.0.1')
    let got = ''
    let ended = false
    s.on('data', (d) => (got += d.toString('latin1')))
    s.on('end', () => (ended = true))
    const answers = () => got.match(/HTTP\/1\.1 200 /g)?.length ?? 0
    for (let i = 1; i <= 2; i++) {
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
      await waitFor(() => answers() === i, `answer ${i}`)
    }
    // Nothing more is sent: the proxy closes it (its keep-alive timeout is 5 s, checked every second).
    await waitFor(() => ended, 'the proxy to close the idle connection', 10_000)
    expect(answers()).to.equal(2)
    expect(u.hits).to.equal(2)
    s.destroy()
  })

  it('does not cut a kept-alive connection whose next request arrived while the event loop was stalled past the keep-alive timeout', async function () {
    this.timeout(30_000)
    const u = await upstream()
    const path = uniquePath()
    await putNode(ctx.admin, `${path}/i-${u.port}`, { host: '127.0.0.1', port: u.port })
    // A ZooKeeper session that outlives the stall, so the stall tests the front and nothing else.
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path }], { zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 30_000 } }))
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    const s = net.connect(p.port, '127.0.0.1')
    closers.push(() => s.destroy())
    let got = ''
    let closed = false
    s.on('data', (d) => (got += d.toString('latin1')))
    s.on('close', () => (closed = true))
    s.on('error', () => {})
    const answers = () => got.match(/HTTP\/1\.1 200 /g)?.length ?? 0
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    await waitFor(() => answers() === 1, 'answer 1')
    // The next request goes into the proxy's socket (a loopback write lands in the peer's queue
    // at once), then the whole process stalls longer than the keep-alive timeout (a long GC, a
    // SIGSTOP) inside a timer callback, so the sweep's timer is the next thing to run, before the
    // poll phase that would read the request. Cutting the connection then loses a request the
    // client sent in good time.
    await new Promise<void>((resolve) =>
      setTimeout(() => {
        s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, KEEP_ALIVE_TIMEOUT_MS + 600)
        resolve()
      }, 0),
    )
    await waitFor(() => answers() === 2 || closed, 'answer 2 or a close', 15_000)
    expect(closed, got).to.equal(false)
    expect(answers()).to.equal(2)
  })

  it('passes a large body through byte for byte to a fast and to a stalled reader, on one kept-alive upstream connection', async () => {
    // 16 MiB, more than the kernel's socket buffers hold, in 4 KiB pieces, one per turn of the
    // upstream's event loop: the proxy reads pieces smaller than a socket's high-water mark, so
    // when its writes to the stalled reader back up it still reads on, and must not read into
    // the buffer a pending write holds.
    const body = patterned(4 * 1024 * 1024)
    const up = await rawUpstream((s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`)
      let at = 0
      const next = (): void => {
        if (at >= body.length) return
        if (s.write(body.subarray(at, (at += 4096)))) setImmediate(next)
        else s.once('drain', next)
      }
      next()
    })
    closers.push(() => up.close())
    const p = await proxyTo(up.port)
    for (const stallMs of [0, 300]) {
      const r = await getBytes(p.port, stallMs)
      expect(r.head).to.match(/^HTTP\/1\.1 200 /)
      expect(r.body.length).to.equal(body.length)
      expect(r.body.equals(body), `body intact (stall ${stallMs} ms)`).to.equal(true)
    }
    expect(up.connections).to.equal(1)
  })

  it('passes a body that arrives after its head, in pieces, and reuses the connection', async () => {
    // Each piece is written once the proxy has read the one before: three reads, however busy.
    const up = await rawUpstream((s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n')
      void consumed(s)
        .then(() => s.write('hello '))
        .then(() => consumed(s))
        .then(() => s.write('world'))
    })
    closers.push(() => up.close())
    const p = await proxyTo(up.port)
    for (let i = 0; i < 2; i++) {
      const r = await send(p.port)
      expect(r.status).to.equal(200)
      expect(r.body).to.equal('hello world')
    }
    expect(up.connections).to.equal(1)
  })

  it('closes the upstream connection when the client leaves in the middle of a large body, and serves the next request whole', async () => {
    const body = patterned(1024 * 1024)
    // The first connection gets the first 64 KiB and never the rest; later ones get it whole.
    let first = true
    let firstClosed = false
    const up = await rawUpstream((s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`)
      if (!first) return void s.write(body)
      first = false
      s.once('close', () => (firstClosed = true))
      s.write(body.subarray(0, 64 * 1024))
    })
    closers.push(() => up.close())
    const p = await proxyTo(up.port)
    await new Promise<void>((resolve) => {
      const s = net.connect(p.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
      s.once('data', () => {
        s.destroy()
        resolve()
      })
    })
    await waitFor(() => firstClosed, 'the proxy to close the half-answered upstream connection')
    const r = await getBytes(p.port)
    expect(r.body.equals(body)).to.equal(true)
    // The half-sent answer's connection was not put back: the next request opened a new one.
    expect(up.connections).to.equal(2)
  })

  it('reads a head split across reads (llhttp) and a plain one (parsed in JS) alike, on one connection', async () => {
    const up = await rawUpstream((s, n) => {
      if (n % 2 === 1) {
        s.write('HTTP/1.1 200 OK\r\nContent-Le')
        void consumed(s).then(() => s.write('ngth: 5\r\nX-Part: split\r\nConnection: keep-alive\r\n\r\nsplit'))
      } else s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Part: whole\r\nConnection: keep-alive\r\n\r\nwhole')
    })
    closers.push(() => up.close())
    const p = await proxyTo(up.port)
    for (const part of ['whole', 'split', 'whole', 'split']) {
      const r = await send(p.port)
      expect([r.status, r.body, r.headers['x-part'], r.headers.connection]).to.deep.equal([200, part, part, undefined])
    }
    expect(up.connections).to.equal(1)
  })

  for (const [why, answer] of [
    ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok'],
    ['a folded header line', 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok'],
    ['a header name with a space before its colon', 'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok'],
  ]) {
    it(`answers 502 to an upstream answer with ${why}, and keeps serving`, async () => {
      let bad = true
      const up = await rawUpstream((s) => s.write(bad ? answer! : 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'))
      closers.push(() => up.close())
      const p = await proxyTo(up.port, { retry: { attempts: 1 } })
      const r = await send(p.port)
      expect(r.status).to.equal(502)
      expect(JSON.parse(r.body).error).to.equal('ZP_ERR_UPSTREAM_RESET')
      bad = false
      expect((await send(p.port)).body).to.equal('ok')
    })
  }

  it('does not reuse an upstream connection that sent bytes beyond the Content-Length', async () => {
    const body = patterned(10_000)
    const up = await rawUpstream((s) => s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body, Buffer.from('HTTP/1.1 200 OK\r\n')])))
    closers.push(() => up.close())
    const p = await proxyTo(up.port)
    for (let i = 0; i < 2; i++) {
      const r = await getBytes(p.port)
      expect(r.body.equals(body)).to.equal(true)
    }
    expect(up.connections).to.equal(2)
  })

  it('cuts the client connection when the upstream closes in the middle of a large body, and keeps serving', async () => {
    const body = patterned(100_000)
    let answers = 0
    const up = await rawUpstream((s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`)
      if (answers++ === 0) s.end(body.subarray(0, 150_000))
      else s.write(body)
    })
    closers.push(() => up.close())
    const p = await proxyTo(up.port)
    const cut = await getBytes(p.port)
    expect(cut.closed).to.equal(true)
    expect(cut.body.length).to.equal(150_000)
    const whole = await getBytes(p.port)
    expect(whole.body.equals(body)).to.equal(true)
  })

  it('fails a request that waits for a free upstream connection longer than its deadline (504)', async () => {
    // The one connection allowed stays busy with an answer whose body ends when the test says.
    let release: () => void = () => {}
    const released = new Promise<void>((r) => (release = r))
    const u = await upstream((req, res) => {
      if (req.url !== '/slow') return res.end('fast')
      res.writeHead(200, { 'content-length': '4' })
      res.write('sl')
      void released.then(() => res.end('ow'))
    })
    const p = await proxyTo(u.port, { maxConnectionsPerInstance: 1, timeoutMs: 300, retry: { attempts: 1 } })
    const slow = send(p.port, '/slow')
    await waitFor(() => u.hits === 1, 'the slow request to arrive')
    const queued = await send(p.port, '/fast')
    expect(queued.status).to.equal(504)
    expect(JSON.parse(queued.body).error).to.equal('ZP_ERR_UPSTREAM_TIMEOUT')
    // It never left the queue: the connection was busy all along.
    expect(u.hits).to.equal(1)
    release()
    expect((await slow).body).to.equal('slow')
    expect((await send(p.port, '/fast')).body).to.equal('fast')
  })

  for (const [why, head] of [
    ['two different Content-Lengths', 'Content-Length: 2\r\nContent-Length: 3'],
    ['a Content-Length list of different values', 'Content-Length: 2, 3'],
  ]) {
    it(`answers 400 to a request with ${why}, and closes without forwarding it`, async () => {
      const u = await upstream()
      const p = await proxyTo(u.port)
      const { got, closed } = await raw(p.port, `POST / HTTP/1.1\r\nHost: x\r\n${head}\r\n\r\nabc`)
      expect(closed).to.equal(true)
      expect(got).to.match(/^HTTP\/1\.1 400 /)
      expect(u.hits).to.equal(0)
      expect((await send(p.port)).status).to.equal(200)
    })
  }

  it('refuses request smuggling: Content-Length with Transfer-Encoding is a 400', async () => {
    const u = await upstream()
    const p = await proxyTo(u.port)
    const { got, closed } = await raw(p.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')
    expect(closed).to.equal(true)
    expect(got).to.match(/^HTTP\/1\.1 400 /)
    expect(u.hits).to.equal(0)
  })
})
