import { expect } from 'chai'
import type http from 'node:http'
import { createHash } from 'node:crypto'
import net from 'node:net'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { spawnUpstreams } from '../../bench/common.js'
import { deadPort, makeConfig, metric, patterned, putNode, scrape, send, startProxy, startUpstream, tempDir, uniquePath, useZooKeeper, waitFor, useClosers } from '../support/helpers.js'
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

  /**
   * A strategy that always picks the first candidate (instances sort by znode name), so a
   * request's first attempt goes where the test wants; a retry is left the others.
   */
  function firstPick(): { module: string } {
    const module = path.join(tempDir(closers, 'zoo-proxy-first-'), 'first.js')
    writeFileSync(module, 'export function createStrategy() { return { pick: (candidates) => candidates[0] } }\n')
    return { module }
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
    const hosts = p.services[0]!.balancer.hosts
    await waitFor(() => hosts.every((h) => h.requests >= 50), 'load on every instance')
    ups[1]!.child.kill('SIGKILL') // its znode stays registered
    const dead = hosts.find((h) => h.port === ports[1])!
    await waitFor(() => dead.ejectedUntil !== 0, 'the dead instance to be ejected', 10_000)
    const attemptsAtEjection = dead.requests
    const answeredAtEjection = statuses[200] ?? 0
    await waitFor(() => (statuses[200] ?? 0) >= answeredAtEjection + 300, '300 more answers after the ejection', 20_000)
    stop = true
    await Promise.all(workers)
    expect(Object.keys(statuses)).to.deep.equal(['200'])
    expect(dead.requests, 'attempts at the dead address after its ejection').to.equal(attemptsAtEjection)
  })

  it('answers from another instance after the per-try timeout when one hangs', async () => {
    const svc = uniquePath()
    // Never answers; counts the attempts the proxy gave up on (it closes their connection).
    let abandoned = 0
    const hang = await upstream('hang', (_req, res) => res.once('close', () => abandoned++))
    const good = await upstream('good')
    await register(svc, [hang.port, good.port])
    // The request's own deadline is 30 s: an answer from good means the 200 ms try was cut.
    const p = await proxy(svc, { timeoutMs: 30_000, retry: { perTryTimeoutMs: 200 }, outlier: { consecutiveFailures: 0 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    for (let i = 0; i < 4; i++) expect(await send(p.port).then((r) => [r.status, r.body])).to.deep.equal([200, 'good'])
    // Round-robin: two of the four went to hang first, then on to good.
    expect([hang.hits, good.hits]).to.deep.equal([2, 4])
    await waitFor(() => abandoned === 2, 'the proxy to give up both attempts at hang')
    const text = await scrape(p.adminPort)
    expect(metric(text, 'zoo_proxy_upstream_attempts_total{service="example",outcome="timeout"}')).to.equal(2)
    expect(metric(text, 'zoo_proxy_retries_total{service="example"}')).to.equal(2)
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
    await register(svc, [await deadPort(closers), good.port])
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
    // And it goes on as before: the rotation comes back to the same two answers.
    const again = [await send(p.port, '/', { method: 'POST', body }), await send(p.port, '/', { method: 'POST', body })]
    expect(again.map((r) => r.status)).to.deep.equal(results.map((r) => r.status))
    expect([rude.hits, good.hits]).to.deep.equal([2, 2])
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
    await register(svc, [await deadPort(closers), good.port])
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
    const text = await scrape(p.adminPort)
    const retries = metric(text, 'zoo_proxy_retries_total{service="example"}')
    // Every attempt after a request's first is a retry the budget granted.
    expect(attempts).to.equal(n + retries)
    // Without a budget: 2 retries each (400). With it: 20% of the requests in the 10 s window plus a
    // reserve of 1/s over it; a run longer than the window may have had its early retries forgotten.
    expect(retries).to.be.within(1, 0.2 * n + 10)
    expect(metric(text, 'zoo_proxy_retry_budget_exhausted_total{service="example"}')).to.be.above(0)
  })

  it('passes a 503 with a Retry-After longer than the deadline on as it came', async () => {
    const svc = uniquePath()
    const later = await upstream('later', answer(503, 'come back later', { 'retry-after': '3600', 'x-from': 'later' }))
    const good = await upstream('good', answer(200, 'good'))
    await putNode(ctx.admin, `${svc}/1-later`, { host: '127.0.0.1', port: later.port })
    await putNode(ctx.admin, `${svc}/2-good`, { host: '127.0.0.1', port: good.port })
    const p = await proxy(svc, { strategy: firstPick(), outlier: { consecutiveFailures: 0 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const r = await send(p.port)
    expect([r.status, r.body, r.headers['retry-after'], r.headers['x-from']]).to.deep.equal([503, 'come back later', '3600', 'later'])
    expect([later.hits, good.hits]).to.deep.equal([1, 0])
  })

  it('sends a 503 whose Retry-After fits in the deadline on to another instance', async () => {
    const svc = uniquePath()
    const soon = await upstream('soon', answer(503, 'in a second', { 'retry-after': '1' }))
    const good = await upstream('good', answer(200, 'good'))
    await putNode(ctx.admin, `${svc}/1-soon`, { host: '127.0.0.1', port: soon.port })
    await putNode(ctx.admin, `${svc}/2-good`, { host: '127.0.0.1', port: good.port })
    const p = await proxy(svc, { strategy: firstPick(), outlier: { consecutiveFailures: 0 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const r = await send(p.port)
    expect([r.status, r.body, r.headers['retry-after']]).to.deep.equal([200, 'good', undefined])
    expect([soon.hits, good.hits]).to.deep.equal([1, 1])
  })

  it('sends GET, HEAD, OPTIONS, PUT and DELETE that got a 503 on to another instance, but not POST or PATCH', async () => {
    const svc = uniquePath()
    const busy = await upstream('busy', answer(503, 'busy'))
    const good = await upstream('good', answer(200, 'good'))
    await putNode(ctx.admin, `${svc}/1-busy`, { host: '127.0.0.1', port: busy.port })
    await putNode(ctx.admin, `${svc}/2-good`, { host: '127.0.0.1', port: good.port })
    const p = await proxy(svc, { strategy: firstPick(), outlier: { consecutiveFailures: 0 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    const idempotent = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']
    for (const method of idempotent) {
      const r = await send(p.port, '/', { method, body: method === 'PUT' ? 'x' : undefined })
      expect([method, r.status, r.body]).to.deep.equal([method, 200, method === 'HEAD' ? '' : 'good'])
    }
    for (const method of ['POST', 'PATCH']) {
      const r = await send(p.port, '/', { method, body: 'x' })
      expect([method, r.status, r.body]).to.deep.equal([method, 503, 'busy'])
    }
    expect(busy.seen.map((s) => s.method)).to.deep.equal([...idempotent, 'POST', 'PATCH'])
    expect(good.seen.map((s) => s.method)).to.deep.equal(idempotent)
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
