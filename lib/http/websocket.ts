// WebSocket (and any HTTP/1.1 Upgrade) tunnels, through http-proxy-3 (node-http-proxy's maintained
// fork; the original calls util._extend, runtime-deprecated since Node 22): pick an instance with the
// service's strategy, hold its lease for the tunnel's whole life (so least-loaded counts open
// tunnels), and answer 503 with no instance or 502 when the instance cannot be reached.
// An upgrade is not retried elsewhere: once the handshake went upstream, it is that instance's.

import { performance } from 'node:perf_hooks'
import type { ClientRequest, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { createProxyServer } from 'http-proxy-3'
import type { Logger } from '../log.js'
import type { Service } from './service.js'

function reject(socket: Duplex, status: number, reason: string): void {
  if (socket.writable) socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
  socket.destroy()
}

export class UpgradeTunnel {
  readonly #proxy = createProxyServer({ xfwd: true, ws: true })
  readonly #log: Logger

  constructor(logger: Logger) {
    this.#log = logger.child({ component: 'upgrade' })
    // Errors come through each ws() call's callback; this listener only keeps a stray one from
    // being an unhandled 'error' event.
    this.#proxy.on('error', () => {})
    // http-proxy-3 ends the client's socket when the instance's closes, but not the other way
    // round when the client's is destroyed (a reset, a client gone mid-stream): the pipe does not
    // end its destination then, and the instance's socket (and its file descriptor) stayed.
    this.#proxy.on('proxyReqWs', ((proxyReq: ClientRequest, _req: IncomingMessage, socket: Duplex) => {
      proxyReq.once('upgrade', (_res: IncomingMessage, upstream: Duplex) => {
        if (socket.destroyed) upstream.destroy()
        else socket.once('close', () => upstream.destroy())
      })
    }) as never)
  }

  handle(service: Service, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const b = service.balancer
    const hashKey = b.usesHashKey ? b.hashKey({ headers: req.headers, remoteAddress: req.socket.remoteAddress }) : undefined
    const lease = b.acquire(null, { hashKey })
    if (lease === null) {
      reject(socket, 503, 'Service Unavailable')
      return
    }
    const started = performance.now()
    let settled = false
    const settle = (ok: boolean) => {
      if (settled) return
      settled = true
      const latencyMs = performance.now() - started
      lease.release(ok ? { ok: true, latencyMs } : { ok: false, kind: 'connect', latencyMs })
    }
    socket.once('close', () => settle(true))
    // The HTTP server keeps its sockets half-open after the client's FIN; a tunnel has no use for
    // that (WebSocket closes in-band), so the client ending it ends it (and http-proxy the upstream).
    socket.once('end', () => socket.destroy())
    const h = lease.host.host.includes(':') ? `[${lease.host.host}]` : lease.host.host
    this.#proxy.ws(req, socket, head, { target: `http://${h}:${lease.host.port}` }, (err) => {
      this.#log.warn({ service: service.name, upstream: `${h}:${lease.host.port}`, err: String(err) }, 'upgrade failed')
      settle(false)
      reject(socket, 502, 'Bad Gateway')
    })
  }
}
