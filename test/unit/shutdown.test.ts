import { expect } from 'chai'
import net from 'node:net'
import type { Exchange } from '../../lib/http/h1/exchange.js'
import { Router } from '../../lib/http/routes.js'
import { ProxyServer } from '../../lib/http/server.js'
import type { Service } from '../../lib/http/service.js'
import { recordingLogger } from '../support/helpers.js'

describe('proxy shutdown', () => {
  it('finishes the request in flight and answers one waiting behind it with 503 + Connection: close', async () => {
    let started: () => void = () => {}
    const inFlight = new Promise<void>((r) => (started = r))
    let answer: () => void = () => {}
    const answered = new Promise<void>((r) => (answer = r))
    // A stand-in service that answers when the test says so; the server under test is the real one.
    const slow = {
      handle: (res: Exchange, done: () => void) => {
        started()
        void answered.then(() => {
          res.end('done')
          done()
        })
      },
    } as unknown as Service
    const server = new ProxyServer(new Router([{ target: slow }]), recordingLogger())
    const at = await server.listen({ host: '127.0.0.1', port: 0 })
    const sock = net.connect(at.port, '127.0.0.1')
    let out = ''
    sock.on('data', (d) => (out += d))
    const closed = new Promise<void>((r) => sock.on('close', () => r()))
    // A second request pipelined behind the first on the busy connection, not started when the
    // shutdown begins. (Written in the same write: one written after close() began could reach
    // the server after the first answer, and whether it did would be decided by timing.)
    sock.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n')
    await inFlight
    const stopping = server.close(5000)
    answer()
    await closed
    await stopping
    const responses = out.split(/(?=HTTP\/1\.1 )/)
    expect(responses).to.have.length(2)
    expect(responses[0]).to.match(/^HTTP\/1\.1 200/)
    expect(responses[0]).to.match(/done$/)
    expect(responses[1]).to.match(/^HTTP\/1\.1 503/)
    expect(responses[1]).to.match(/\r\nconnection: close\r\n/i)
    expect(responses[1]).to.include('ZP_ERR_SHUTTING_DOWN')
  })

  it('cuts a request still in flight when the shutdown timeout runs out, and says so', async () => {
    // The service never answers: a close that waited for it would never end (mocha's timeout is
    // only the backstop; what is judged is the cut and the line saying so).
    let started: () => void = () => {}
    const inFlight = new Promise<void>((r) => (started = r))
    const never = { handle: () => started() } as unknown as Service
    const logger = recordingLogger()
    const server = new ProxyServer(new Router([{ target: never }]), logger)
    const at = await server.listen({ host: '127.0.0.1', port: 0 })
    const sock = net.connect(at.port, '127.0.0.1')
    let out = ''
    sock.on('data', (d) => (out += d))
    sock.on('error', () => {})
    const closed = new Promise<void>((r) => sock.on('close', () => r()))
    sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    await inFlight
    await server.close(100)
    await closed
    expect(out).to.equal('')
    expect(logger.lines.filter((l) => l.level === 'warn').map((l) => [l.msg, l.obj])).to.deep.equal([['shutdown timeout reached, cutting in-flight requests', { inFlight: 1, timeoutMs: 100 }]])
  })
})
