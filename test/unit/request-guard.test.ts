// The request path's last-resort guard (issue 21, "no handler can throw past its request"): a
// handler, or a dependency it calls now or in a later turn, that throws gets the client a 502 (or
// its connection cut once the answer started) and a log line, and the proxy keeps serving.

import { expect } from 'chai'
import net from 'node:net'
import type { Exchange } from '../../lib/http/h1/exchange.js'
import { Router } from '../../lib/http/routes.js'
import { ProxyServer } from '../../lib/http/server.js'
import type { Service } from '../../lib/http/service.js'
import { createProxy, validateConfig } from '../../lib/index.js'
import type { Logger } from '../../lib/log.js'
import { deadPort, recordingLogger, send, startUpstream, useClosers } from '../support/helpers.js'

/** Writes `text` on a fresh connection and reads until the proxy closes it (or `until` matches). */
function exchange(port: number, text: string, until?: RegExp): Promise<{ out: string; closed: boolean }> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1')
    let out = ''
    sock.on('error', () => {})
    sock.on('data', (d) => {
      out += d.toString('latin1')
      if (until?.test(out)) {
        sock.destroy()
        resolve({ out, closed: false })
      }
    })
    sock.on('close', () => resolve({ out, closed: true }))
    sock.write(text)
  })
}

const ok = { handle: (ex: Exchange, done: () => void) => (ex.end('fine'), done()) } as unknown as Service

describe('the request path guard', () => {
  const closers = useClosers()

  async function front(target: Service) {
    const logger = recordingLogger()
    const server = new ProxyServer(new Router([{ match: { pathPrefix: '/ok' }, target: ok }, { target }]), logger)
    closers.push(() => server.close(1_000))
    const at = await server.listen({ host: '127.0.0.1', port: 0 })
    return { port: at.port, logger, server }
  }

  const throwsAt = (what: string) => () => {
    throw new Error(`${what} exploded`)
  }

  it('answers 502 with a JSON error and closes, when a handler throws before answering; the next client is served', async () => {
    const { port, logger } = await front({ handle: throwsAt('handle') } as unknown as Service)
    for (const req of ['GET /x HTTP/1.1\r\nHost: a\r\n\r\n', 'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc', 'GET /x HTTP/1.0\r\n\r\n']) {
      const r = await exchange(port, req)
      expect(r.out, req).to.match(/^HTTP\/1\.1 502 /)
      expect(r.out).to.match(/\r\nconnection: close\r\n/)
      expect(r.out).to.include('"error":"ZP_ERR_INTERNAL"')
      expect(r.out).not.to.include('exploded')
      expect(r.closed).to.equal(true)
      expect((await send(port, '/ok')).body).to.equal('fine')
    }
    const errors = logger.lines.filter((l) => l.level === 'error')
    expect(errors.map((l) => (l.obj as { err: Error }).err.message)).to.deep.equal(['handle exploded', 'handle exploded', 'handle exploded'])
  })

  it('cuts the connection when a handler throws after its answer started', async () => {
    const halfway = {
      handle: (ex: Exchange) => {
        ex.writeHead(200, {})
        ex.write(Buffer.from('part'))
        throw new Error('midway exploded')
      },
    } as unknown as Service
    const { port, logger } = await front(halfway)
    const r = await exchange(port, 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n')
    expect(r.closed).to.equal(true)
    expect(r.out).to.match(/^HTTP\/1\.1 200 /)
    // A truncated chunked answer: no last chunk ever came.
    expect(r.out).not.to.include('0\r\n\r\n')
    expect(logger.lines.filter((l) => l.level === 'error')).to.have.length(1)
    expect((await send(port, '/ok')).body).to.equal('fine')
  })

  it('answers 502 to an upgrade whose handler throws, and keeps serving', async () => {
    // The upgrade tunnel asks the service for its balancer first: this one throws there.
    const broken = {
      name: 'broken',
      get balancer(): never {
        throw new Error('balancer exploded')
      },
    } as unknown as Service
    const { port, logger } = await front(broken)
    const r = await exchange(port, 'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
    expect(r.out).to.equal('HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
    expect(r.closed).to.equal(true)
    expect(logger.lines.find((l) => l.level === 'error')?.obj).to.include({ kind: 'upgrade' })
    expect((await send(port, '/ok')).body).to.equal('fine')
  })

  describe('in a real service', () => {
    async function proxyWith(logger: Logger, accessLog?: () => void) {
      const config = await validateConfig(
        {
          listen: '127.0.0.1:0',
          zookeeper: { connect: '127.0.0.1:1' },
          log: { access: accessLog !== undefined },
          shutdownTimeoutMs: 1_000,
          services: [{ name: 's', path: '/s', retry: { attempts: 1 } }],
        },
        process.cwd(),
      )
      const proxy = await createProxy(config, { role: 'worker', logger, ...(accessLog === undefined ? {} : { accessLog }) })
      await proxy.start()
      closers.push(() => proxy.close())
      const instance = (port: number) => [{ key: `/s/${port}`, host: '127.0.0.1', port, weight: 1, state: 'up' as const, meta: {} }]
      return { proxy, port: proxy.address().port, use: (port: number) => proxy.applySnapshot('s', instance(port)) }
    }

    it('answers 502 when a dependency throws in a later turn (the logger, on a failed attempt), then serves again', async () => {
      const logger = recordingLogger()
      // The service logs a failed attempt at debug level from the upstream socket's event: throw there.
      const throwing = { ...logger, child: () => ({ ...logger, debug: throwsAt('debug'), child: () => throwing }) } as Logger
      const p = await proxyWith(throwing)
      p.use(await deadPort(closers))
      const r = await exchange(p.port, 'GET /a HTTP/1.1\r\nHost: a\r\n\r\n')
      expect(r.out).to.match(/^HTTP\/1\.1 502 /)
      expect(r.out).to.include('"error":"ZP_ERR_INTERNAL"')
      expect(logger.lines.find((l) => l.level === 'error')?.msg).to.match(/request handler threw/)
      const up = await startUpstream('up')
      closers.push(() => up.close())
      p.use(up.port)
      expect(await send(p.port, '/b')).to.include({ status: 200, body: 'up' })
    })

    it('keeps the answer and the connection count when the access log throws after the answer', async () => {
      const logger = recordingLogger()
      const p = await proxyWith(logger, throwsAt('access log'))
      const up = await startUpstream('up')
      closers.push(() => up.close())
      p.use(up.port)
      for (let i = 0; i < 3; i++) expect(await send(p.port, `/r${i}`)).to.include({ status: 200, body: 'up' })
      expect(logger.lines.filter((l) => l.level === 'error')).to.have.length(3)
      // Each request was counted done once: the shutdown finds none in flight to wait for or cut.
      await p.proxy.close()
      expect(logger.lines.filter((l) => /in-flight/.test(l.msg))).to.deep.equal([])
    })
  })
})
