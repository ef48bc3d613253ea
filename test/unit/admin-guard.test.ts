// The admin listener's last-resort guard and its path decoding (issue 21 item 2): a malformed
// %-escape is a 400 naming it, and whatever a handler or a dependency throws, at once or later,
// is a 500 with a JSON error and a log line, while the listener keeps answering.

import { expect } from 'chai'
import http from 'node:http'
import net from 'node:net'
import type { Discovery } from '../../lib/discovery/index.js'
import type { Service } from '../../lib/http/service.js'
import { ADMIN_MAX_CONNECTIONS, AdminServer } from '../../lib/ops/admin.js'
import type { AdminSources } from '../../lib/ops/admin.js'
import type { MetricsSource } from '../../lib/ops/metrics.js'
import { recordingLogger, useClosers, waitFor } from '../support/helpers.js'

interface Answer {
  readonly status: number
  readonly type: string | undefined
  readonly body: string
}

/** A raw request: the path goes out byte for byte, escapes and all (fetch would normalise it). */
function request(port: number, method: string, path: string, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (text += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body: text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

const fakeDiscovery = (status: () => ReturnType<Discovery['status']>) => ({ ready: true, status }) as unknown as Discovery

function fakeService(setOverride: () => void = () => {}): Service {
  return {
    name: 'svc',
    config: { path: '/svc', strategy: { name: 'round-robin' } },
    balancer: { hosts: [{ hostPort: '127.0.0.1:9', key: '/svc/a' }], setOverride },
  } as unknown as Service
}

describe('the admin listener guard', () => {
  const closers = useClosers()

  async function admin(src: Partial<AdminSources>) {
    const logger = recordingLogger()
    const server = new AdminServer({ discovery: fakeDiscovery(() => ({ session: { state: 'connected' }, services: {} }) as never), services: [fakeService()], logger, ...src })
    closers.push(() => server.close())
    const at = await server.listen({ host: '127.0.0.1', port: 0 })
    return { port: at.port, logger }
  }

  it(`closes connections past ADMIN_MAX_CONNECTIONS (${ADMIN_MAX_CONNECTIONS}) as they come, and still answers once they go (found by the admin attack: silent connections used up the file descriptors)`, async () => {
    const { port } = await admin({})
    const silent: net.Socket[] = []
    closers.push(() => silent.forEach((s) => s.destroy()))
    const closed: Promise<void>[] = []
    for (let i = 0; i < ADMIN_MAX_CONNECTIONS + 20; i++) {
      const s = net.connect(port, '127.0.0.1')
      s.on('error', () => {})
      closed.push(new Promise((r) => s.once('close', () => r())))
      silent.push(s)
      await new Promise((r) => s.once('connect', r))
    }
    // The 20 beyond the cap are closed by the listener, without a request.
    await Promise.all(closed.slice(ADMIN_MAX_CONNECTIONS))
    for (const s of silent.slice(0, ADMIN_MAX_CONNECTIONS)) s.destroy()
    await waitFor(async () => (await request(port, 'GET', '/healthz').catch(() => ({ status: 0 }))).status === 200, 'the listener answering again')
  })

  // Lone %, one hex digit, non-hex, a cut 3-byte sequence, overlong UTF-8, bytes never in UTF-8, a
  // UTF-16 surrogate, a stray continuation byte: every way decodeURIComponent refuses.
  const BAD = ['%', '%A', '%zz', '%E0%A4%A', '%C0%AF', '%FF', '%ED%A0%80', '%80', 'a%2', '%%41']

  it('answers 400 naming the bad escape, for every malformed escape anywhere in any admin path and method', async () => {
    const { port, logger } = await admin({})
    for (const bad of BAD) {
      for (const [method, path] of [
        ['GET', `/services/svc/instances/${bad}`],
        ['DELETE', `/services/${bad}/instances/127.0.0.1:9`],
        ['PUT', `/services/svc/instances/127.0.0.1:9${bad}`],
        ['GET', `/upstreams${bad}`],
        ['POST', `/reload${bad}`],
        ['GET', `/${bad}?q=%`],
      ] as const) {
        const a = await request(port, method, path, method === 'PUT' ? '{"weight":1}' : undefined)
        expect([method, path, a.status], a.body).to.deep.equal([method, path, 400])
        expect(JSON.parse(a.body)).to.include({ error: 'bad path' }).and.to.have.property('message').that.matches(/%-escape/)
      }
    }
    // Refused as the client's mistake: nothing for the error log.
    expect(logger.lines.filter((l) => l.level === 'error')).to.deep.equal([])
    expect((await request(port, 'GET', '/healthz')).status).to.equal(200)
  })

  it('still decodes well-formed escapes in the instance path', async () => {
    let set = 0
    const { port } = await admin({ services: [fakeService(() => set++)] })
    const a = await request(port, 'DELETE', '/services/%73vc/instances/127.0.0.1%3A9')
    expect(a.status, a.body).to.equal(200)
    expect(set).to.equal(1)
  })

  it('turns a dependency that throws at once into a 500 with a JSON error and a log line, and keeps serving', async () => {
    const cause = new Error('status exploded')
    const { port, logger } = await admin({
      discovery: fakeDiscovery(() => {
        throw cause
      }),
    })
    for (let i = 0; i < 3; i++) {
      const a = await request(port, 'GET', '/upstreams')
      expect(a.status).to.equal(500)
      expect(a.type).to.equal('application/json')
      expect(JSON.parse(a.body)).to.include({ error: 'internal error', code: 'ZP_ERR_INTERNAL' })
      // The cause stays in the log, not in the answer.
      expect(a.body).not.to.include('exploded')
      expect((await request(port, 'GET', '/healthz')).status).to.equal(200)
    }
    const errors = logger.lines.filter((l) => l.level === 'error')
    expect(errors).to.have.length(3)
    expect(errors[0]!.obj).to.include({ err: cause, method: 'GET', url: '/upstreams' })
  })

  it('turns a throw after the request body was read (a later turn) into a 500 and a log line', async () => {
    const cause = new Error('setOverride exploded')
    const { port, logger } = await admin({
      services: [
        fakeService(() => {
          throw cause
        }),
      ],
    })
    const a = await request(port, 'PUT', '/services/svc/instances/127.0.0.1:9', '{"weight":2}')
    expect([a.status, JSON.parse(a.body).code]).to.deep.equal([500, 'ZP_ERR_INTERNAL'])
    expect(logger.lines.find((l) => l.level === 'error')?.obj).to.include({ err: cause, method: 'PUT' })
    expect((await request(port, 'GET', '/healthz')).status).to.equal(200)
  })

  it('turns a throw inside a promise callback (the metrics answer) into a 500 and a log line', async () => {
    const cause = new Error('content type exploded')
    const metrics = {
      text: () => Promise.resolve('# nothing'),
      get contentType(): string {
        throw cause
      },
    } as unknown as MetricsSource
    const { port, logger } = await admin({ metrics })
    const a = await request(port, 'GET', '/metrics')
    expect([a.status, JSON.parse(a.body).code]).to.deep.equal([500, 'ZP_ERR_INTERNAL'])
    expect(logger.lines.find((l) => l.level === 'error')?.obj).to.include({ err: cause, url: '/metrics' })
    expect((await request(port, 'GET', '/healthz')).status).to.equal(200)
  })
})
