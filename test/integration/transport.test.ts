// The transport seam (issue 26 item 1): the HTTP/1.1 pool and the HTTP/2 pool behind one
// interface, driven by the same code, hand the sink the same head, so the retry loop and the
// HTTP/1.1 writer need no change to use either.

import { expect } from 'chai'
import { Buffer } from 'node:buffer'
import http from 'node:http'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import type { ResponseHead } from '../../lib/http/h1/headers.js'
import { UpstreamClock, UpstreamPool } from '../../lib/http/h1/upstream.js'
import type { AttemptControl, UpstreamRequest } from '../../lib/http/h1/upstream.js'
import { H2UpstreamPool } from '../../lib/http/h2/upstream-pool.js'
import { modelFromResponseHead } from '../../lib/http/transport.js'
import type { Transport, TransportSink } from '../../lib/http/transport.js'
import { useClosers } from '../support/helpers.js'

/** One exchange through any transport: the head and body the sink got. */
function exchange(t: Transport, req: UpstreamRequest): Promise<{ head: ResponseHead; body: string }> {
  return new Promise((resolve, reject) => {
    let head: ResponseHead | null = null
    const chunks: Buffer[] = []
    const sink: TransportSink = {
      holdsChunks: false,
      onStart: (_c: AttemptControl) => {},
      onHead: (h) => {
        head = h
        return true
      },
      onBody: (c) => {
        chunks.push(Buffer.from(c))
        return true
      },
      onEnd: () => resolve({ head: head!, body: Buffer.concat(chunks).toString() }),
      onError: reject,
    }
    t.dispatch(req, sink)
  })
}

describe('one transport interface for HTTP/1.1 and HTTP/2 instances', function () {
  const closers = useClosers()

  it('gives the same head model and body from an HTTP/1.1 and an HTTP/2 instance answering alike', async () => {
    const answer = { status: 404, headers: { 'content-type': 'text/plain', 'x-id': '7' }, body: 'missing' }
    const h1 = http.createServer((req, res) => {
      res.writeHead(answer.status, { ...answer.headers, 'content-length': String(answer.body.length), connection: 'keep-alive' })
      res.end(req.method === 'HEAD' ? undefined : answer.body)
    })
    const h2 = http2.createServer()
    h2.on('stream', (stream) => {
      stream.respond({ ':status': answer.status, ...answer.headers, 'content-length': String(answer.body.length) })
      stream.end(answer.body)
    })
    for (const s of [h1, h2]) {
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
      closers.push(() => new Promise<void>((r) => s.close(() => r())))
    }
    const clock = new UpstreamClock()
    closers.push(() => clock.stop())
    const transports: Transport[] = [
      new UpstreamPool({ host: '127.0.0.1', port: (h1.address() as AddressInfo).port, connections: 2, keepAliveTimeoutMs: 5_000, connectTimeoutMs: 5_000, clock, tls: null }),
      new H2UpstreamPool({ host: '127.0.0.1', port: (h2.address() as AddressInfo).port, protocol: 'h2c', tls: null }),
    ]
    // Closed first (last-in first-out): an instance's close() waits for the pools' connections.
    for (const t of transports) closers.push(() => t.close())
    const req: UpstreamRequest = { method: 'GET', path: '/x', headers: ['host', 'svc'], body: null, contentLength: -1, headersTimeoutMs: 5_000, bodyTimeoutMs: 5_000 }
    const seen = []
    for (const t of transports) {
      const { head, body } = await exchange(t, req)
      const model = modelFromResponseHead(head)
      // Only what both carry end to end: each server adds a Date of its own.
      const kept = []
      for (let i = 0; i < model.headers.length; i += 2) if (model.headers[i]!.toLowerCase() !== 'date') kept.push(model.headers[i]!.toLowerCase(), model.headers[i + 1]!)
      seen.push({ protocol: t.protocol, status: head.status, text: head.text, headers: kept, contentLength: head.contentLength, body })
    }
    const common = { status: 404, text: 'Not Found', headers: ['content-type', 'text/plain', 'x-id', '7'], contentLength: 7, body: 'missing' }
    expect(seen).to.deep.equal([
      { protocol: 'http/1.1', ...common },
      { protocol: 'h2c', ...common },
    ])
  })
})
