import { expect } from 'chai'
import type http from 'node:http'
import { createHash } from 'node:crypto'
import net from 'node:net'
import { freePort } from '../../scripts/zookeeper.js'
import { spawnUpstreams } from '../../bench/common.js'
import { makeConfig, patterned, putNode, send, startProxy, startUpstream, uniquePath, useZooKeeper, waitFor, useClosers } from '../support/helpers.js'
import type { Upstream } from '../support/helpers.js'

describe('failover (real ZooKeeper, real upstream processes)', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()
  const closers = useClosers()

  async function upstream(name: string, handler?: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Upstream> {
    const u = await startUpstream(name, handler)
    closers.push(() => u.close())
    return u
  }

  async function proxy(path: string, service: object = {}) {
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path, ...service }]))
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length > 0, 'instances')
    return p
  }

  async function register(path: string, ports: number[]): Promise<void> {
    for (const port of ports) await putNode(ctx.admin, `${path}/i-${port}`, { host: '127.0.0.1', port })
  }

  const answer = (status: number, body: string, headers: Record<string, string> = {}) => (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume()
    req.once('end', () => {
      res.writeHead(status, { 'content-type': 'text/plain', ...headers })
      res.end(body)
    })
  }

  /** An upstream handler that answers each request with its body's length, and keeps the lengths. */
  const countingBodies = () => {
    const lengths: number[] = []
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      let n = 0
      req.on('data', (d: Buffer) => (n += d.length))
      req.once('end', () => {
        lengths.push(n)
        res.end(String(n))
      })
    }
    return { lengths, handler }
  }

  it('loses no request when an instance is SIGKILLed under load, and ejects it', async () => {
    const svc = uniquePath()
    const ups = await Promise.all([0, 1, 2].map((i) => spawnUpstreams([{ name: `u${i}`, delayMs: 1 }])))
    for (const u of ups) closers.push(async () => void u.child.kill('SIGKILL'))
    const ports = ups.map((u) => u.ports[0]!)
    await register(svc, ports)
    const p = await proxy(svc)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 3, 'three instances')

    const statuses: Record<number, number> = {}
    let stop = false
    const workers = Array.from({ length: 8 }, async () => {
      while (!stop) {
        const r = await send(p.port).catch(() => ({ status: 0 }))
        statuses[r.status] = (statuses[r.status] ?? 0) + 1
      }
    })
    await new Promise((r) => setTimeout(r, 700))
    ups[1]!.child.kill('SIGKILL') // its znode stays registered
    const dead = p.services[0]!.balancer.hosts.find((h) => h.port === ports[1])!
    await waitFor(() => dead.ejectedUntil !== 0, 'the dead instance to be ejected', 10_000)
    const attemptsAtEjection = dead.requests
    await new Promise((r) => setTimeout(r, 800))
    stop = true
    await Promise.all(workers)
    expect(Object.keys(statuses)).to.deep.equal(['200'])
    expect(statuses[200]).to.be.above(100)
    expect(dead.requests, 'attempts at the dead address after its ejection').to.equal(attemptsAtEjection)
  })

  it('answers from another instance after the per-try timeout when one hangs', async () => {
    const svc = uniquePath()
    const hang = await upstream('hang', () => {})
    const good = await upstream('good')
    await register(svc, [hang.port, good.port])
    const p = await proxy(svc, { retry: { perTryTimeoutMs: 200 }, outlier: { consecutiveFailures: 0 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const took: number[] = []
    for (let i = 0; i < 4; i++) {
      const t = Date.now()
      const r = await send(p.port)
      took.push(Date.now() - t)
      expect(r.status).to.equal(200)
      expect(r.body).to.equal('good')
    }
    expect(hang.hits).to.equal(2)
    expect(Math.max(...took)).to.be.within(190, 2000)
  })

  it('does not resend a POST that got a 503, but does when it carries an Idempotency-Key', async () => {
    const svc = uniquePath()
    const busy = await upstream('busy', answer(503, 'busy'))
    const good = await upstream('good', answer(200, 'good'))
    await register(svc, [busy.port, good.port])
    const p = await proxy(svc, { outlier: { consecutiveFailures: 0 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const plain = [await send(p.port, '/', { method: 'POST', body: 'x' }), await send(p.port, '/', { method: 'POST', body: 'x' })]
    expect(plain.map((r) => r.status).sort()).to.deep.equal([200, 503])
    expect(plain.find((r) => r.status === 503)!.body).to.equal('busy') // the upstream's own answer
    expect([busy.hits, good.hits]).to.deep.equal([1, 1])

    for (let i = 0; i < 4; i++) {
      const r = await send(p.port, '/', { method: 'POST', body: 'x', headers: { 'idempotency-key': `k${i}` } })
      expect(r.status).to.equal(200)
    }
    expect(busy.hits).to.equal(3)
    expect(good.hits).to.equal(5)
  })

  it('sends a POST to a refused port on to another instance, where it arrives exactly once', async () => {
    const svc = uniquePath()
    const good = await upstream('good', answer(200, 'good'))
    await register(svc, [await freePort(), good.port])
    const p = await proxy(svc)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    for (let i = 0; i < 3; i++) expect((await send(p.port, '/', { method: 'POST', body: `n${i}` })).status).to.equal(200)
    expect(good.hits).to.equal(3)
  })

  it('answers a 1 MiB POST to an instance that resets with a clean 502, no retry, nothing left in flight', async () => {
    const svc = uniquePath()
    let received = 0
    const rude = await upstream('rude', (req) => {
      req.on('data', (d: Buffer) => {
        received += d.length
        if (received > 64 * 1024) req.socket.destroy()
      })
    })
    const good = await upstream('good', answer(200, 'good'))
    await register(svc, [rude.port, good.port])
    const p = await proxy(svc, { outlier: { consecutiveFailures: 0 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const body = Buffer.alloc(1024 * 1024, 1)
    const results = [await send(p.port, '/', { method: 'POST', body }), await send(p.port, '/', { method: 'POST', body })]
    expect(results.map((r) => r.status).sort()).to.deep.equal([200, 502])
    expect(JSON.parse(results.find((r) => r.status === 502)!.body)).to.include({ error: 'ZP_ERR_UPSTREAM_RESET', service: 'example' })
    expect([rude.hits, good.hits]).to.deep.equal([1, 1])
    await waitFor(() => p.services[0]!.balancer.hosts.every((h) => h.inFlight === 0), 'nothing in flight')
    expect((await send(p.port, '/', { method: 'POST', body })).status).to.be.oneOf([200, 502])
  })

  it('holds a small chunked body so a reset PUT is retried whole on another instance', async () => {
    const svc = uniquePath()
    const rude = await upstream('rude', (req) => req.once('end', () => req.socket.destroy()).resume())
    const { lengths, handler } = countingBodies()
    const good = await upstream('good', handler)
    await register(svc, [rude.port, good.port])
    const p = await proxy(svc, { outlier: { consecutiveFailures: 0 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const body = Buffer.alloc(10 * 1024, 'c')
    for (let i = 0; i < 2; i++) {
      const r = await send(p.port, '/', { method: 'PUT', body, headers: { 'transfer-encoding': 'chunked' } })
      expect(r.status).to.equal(200)
      expect(r.body).to.equal(String(body.length))
    }
    expect(rude.hits).to.equal(1)
    expect(lengths).to.deep.equal([body.length, body.length])
  })

  it('retries a body that came in several pieces on another instance byte for byte', async () => {
    const svc = uniquePath()
    const rude = await upstream('rude', (req) => req.once('end', () => req.socket.destroy()).resume())
    const got: string[] = []
    const good = await upstream('good', (req, res) => {
      const hash = createHash('sha256')
      req.on('data', (c: Buffer) => hash.update(c))
      req.once('end', () => {
        got.push(hash.digest('hex'))
        res.end('ok')
      })
    })
    await register(svc, [rude.port, good.port])
    const p = await proxy(svc, { outlier: { consecutiveFailures: 0 }, strategy: 'round-robin' })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const body = patterned(12 * 1024)
    const want = createHash('sha256').update(body).digest('hex')
    for (let round = 0; round < 2; round++) {
      // Four pieces, 10 ms apart: the proxy reads (and holds) them one by one.
      const status = await new Promise<string>((resolve, reject) => {
        const s = net.connect(p.port, '127.0.0.1', async () => {
          s.write(`PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`)
          for (let at = 0; at < body.length; at += 12 * 1024) {
            s.write(body.subarray(at, at + 12 * 1024))
            await new Promise((r) => setTimeout(r, 10))
          }
        })
        let answer = ''
        s.on('data', (d) => (answer += d.toString('latin1')))
        s.on('close', () => resolve(answer.slice(0, 12)))
        s.on('error', reject)
      })
      expect(status).to.equal('HTTP/1.1 200')
    }
    expect(rude.hits).to.equal(1)
    expect(got).to.deep.equal([want, want])
  })

  it('streams a big chunked POST to another instance, whole, when the first refuses', async () => {
    const svc = uniquePath()
    const { lengths, handler } = countingBodies()
    const good = await upstream('good', handler)
    await register(svc, [await freePort(), good.port])
    const p = await proxy(svc)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const body = Buffer.alloc(300 * 1024, 'b')
    for (let i = 0; i < 2; i++) {
      expect((await send(p.port, '/', { method: 'POST', body, headers: { 'transfer-encoding': 'chunked' } })).status).to.equal(200)
    }
    expect(lengths).to.deep.equal([body.length, body.length])
  })

  it('keeps upstream attempts within the retry budget when every instance fails', async () => {
    const svc = uniquePath()
    const ups = await Promise.all(['a', 'b', 'c'].map((n) => upstream(n, answer(503, n))))
    await register(svc, ups.map((u) => u.port))
    const p = await proxy(svc, { retry: { budget: { percent: 20, minRetriesPerSecond: 1 } }, outlier: { consecutiveFailures: 0 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 3, 'three instances')
    const n = 200
    for (let i = 0; i < n; i++) expect((await send(p.port)).status).to.equal(503)
    const attempts = ups.reduce((a, u) => a + u.hits, 0)
    // Without a budget: 3 attempts each (600). With it: 200 + 20% + a reserve of 1/s over 10 s.
    expect(attempts).to.be.within(n + 1, n + 0.2 * n + 10)
  })

  it('passes a 503 with a Retry-After longer than the deadline on as it came', async () => {
    const svc = uniquePath()
    const later = await upstream('later', answer(503, 'come back later', { 'retry-after': '3600' }))
    const good = await upstream('good', answer(200, 'good'))
    await register(svc, [later.port, good.port])
    const p = await proxy(svc, { outlier: { consecutiveFailures: 0 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const statuses = [(await send(p.port)).status, (await send(p.port)).status].sort()
    expect(statuses).to.deep.equal([200, 503])
    expect(later.hits + good.hits).to.equal(2)
  })

  it('takes an instance failing its active health check out, and puts it back when it recovers', async () => {
    const svc = uniquePath()
    let sick = false
    const flaky = await upstream('flaky', (req, res) => {
      if (req.url === '/health') return answer(sick ? 500 : 200, sick ? 'sick' : 'ok')(req, res)
      answer(200, 'flaky')(req, res)
    })
    const steady = await upstream('steady')
    await register(svc, [flaky.port, steady.port])
    const p = await proxy(svc, { healthCheck: { path: '/health', intervalMs: 50, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 2 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const bodies = async () => new Set(await Promise.all(Array.from({ length: 6 }, async () => (await send(p.port)).body)))
    expect([...(await bodies())].sort()).to.deep.equal(['flaky', 'steady'])
    sick = true
    await waitFor(() => p.services[0]!.balancer.hosts.find((h) => h.port === flaky.port)!.checkHealthy === false, 'flaky to fail its check')
    expect([...(await bodies())]).to.deep.equal(['steady'])
    sick = false
    await waitFor(async () => (await bodies()).has('flaky'), 'flaky back in rotation')
  })

  it('routes to every instance in panic mode when all are unhealthy', async () => {
    const svc = uniquePath()
    const a = await upstream('a', (req, res) => (req.url === '/health' ? answer(500, 'no')(req, res) : answer(200, 'a')(req, res)))
    await register(svc, [a.port])
    const p = await proxy(svc, { healthCheck: { path: '/health', intervalMs: 50, timeoutMs: 500, unhealthyThreshold: 1 } })
    await waitFor(() => p.services[0]!.balancer.hosts[0]?.checkHealthy === false, 'the only instance to fail its check')
    expect(p.services[0]!.balancer.panic).to.equal(true)
    expect((await send(p.port)).body).to.equal('a')
  })
})
