// The two upstreams of a fuzz run: node:http servers that answer `/r/<id>/<kind>` in the way
// `<kind>` names, some of them with raw misbehaving bytes, and take or decline upgrades.

import type { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { LARGE } from './options.js'

// What the upstreams do, by the `<kind>` in the path.

interface Kind {
  readonly weight: number
  /** Right outcomes for a valid request of this kind. */
  readonly ok: readonly string[]
  /** Written as raw bytes: a HEAD gets a body anyway (one more way to misbehave). */
  readonly raw?: boolean
}

export const KINDS: Readonly<Record<string, Kind>> = {
  plain: { weight: 30, ok: ['200'] },
  chunked: { weight: 10, ok: ['200'] },
  large: { weight: 2, ok: ['200'] },
  slow: { weight: 6, ok: ['200'] },
  /** 100 Continue and 103 Early Hints before the answer. */
  info: { weight: 3, ok: ['200'] },
  /** The upstream closes its connection after the answer. */
  keepclose: { weight: 3, ok: ['200'] },
  /** Answered before the request body was read. */
  early: { weight: 3, ok: ['200'] },
  s204: { weight: 4, ok: ['204'] },
  s304: { weight: 3, ok: ['304'] },
  s502: { weight: 3, ok: ['502'] },
  s503: { weight: 3, ok: ['503'] },
  /** The head and part of the body, then the connection closes. */
  reset: { weight: 3, ok: ['truncated', 'closed', '502'] },
  /** The connection closes before any answer. */
  reset0: { weight: 2, ok: ['502'] },
  /** A chunked answer followed, in the same write, by a second answer nobody asked for. */
  poisonc: { weight: 4, ok: ['200'], raw: true },
  /** The same after a Content-Length answer. */
  poisoncl: { weight: 4, ok: ['200'], raw: true },
  dupcl: { weight: 2, ok: ['502'], raw: true },
  unasked101: { weight: 2, ok: ['502'], raw: true },
  /** HTTP/1.0, delimited by the close. */
  http10: { weight: 2, ok: ['200'], raw: true },
  badchunk: { weight: 2, ok: ['502', 'truncated', 'closed'], raw: true },
  /** Bare LF line ends in the answer head. */
  lfresp: { weight: 2, ok: ['200', '502'], raw: true },
}
export const KIND_WEIGHTS = Object.entries(KINDS).map(([k, v]) => [k, v.weight] as const)
export const POISON = 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON'

/** The body the upstreams send for a request (the client computes it too, to compare). */
export function answerBody(id: string, kind: string, length: number, sha: string): string {
  if (kind === 'early') return `id=${id};early\n`
  const base = `id=${id};${kind};${length};${sha}\n`
  if (kind !== 'large') return base
  const unit = `id=${id};`
  return (base + unit.repeat(Math.ceil((LARGE - base.length) / unit.length))).slice(0, LARGE)
}

function rawAnswer(kind: string, id: string, body: string): string | null {
  switch (kind) {
    case 'poisonc':
      return `HTTP/1.1 200 OK\r\nx-id: ${id}\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n${POISON}`
    case 'poisoncl':
      return `HTTP/1.1 200 OK\r\nx-id: ${id}\r\nContent-Length: ${body.length}\r\n\r\n${body}${POISON}`
    case 'dupcl':
      return `HTTP/1.1 200 OK\r\nx-id: ${id}\r\nContent-Length: ${body.length}\r\nContent-Length: ${body.length + 6}\r\n\r\n${body}XXXXXX`
    case 'unasked101':
      return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-id: ${id}\r\n\r\n${body}`
    case 'http10':
      return `HTTP/1.0 200 OK\r\nx-id: ${id}\r\n\r\n${body}`
    case 'badchunk':
      return `HTTP/1.1 200 OK\r\nx-id: ${id}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`
    case 'lfresp':
      return `HTTP/1.1 200 OK\nx-id: ${id}\nContent-Length: ${body.length}\n\n${body}`
    default:
      return null
  }
}

export interface UpstreamStats {
  requests: number
  upgrades: number
  nested: number
  cut: number
  readonly malformed: Record<string, number>
}

interface Upstream {
  readonly port: number
  readonly open: number
  close(): Promise<void>
}

/** A small delay from the id, so `slow` needs no PRNG of its own. */
function delayOf(id: string): number {
  let h = 0
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) | 0
  return 1 + (Math.abs(h) % 5)
}

function answer(req: http.IncomingMessage, res: http.ServerResponse, id: string, kind: string, body: string): void {
  const socket = req.socket
  const plain = (extra: Record<string, string> = {}) => {
    res.writeHead(200, { 'x-id': id, 'content-type': 'text/plain', 'content-length': String(body.length), ...extra })
    res.end(body)
  }
  switch (kind) {
    case 'plain':
    case 'early':
      return plain()
    case 'keepclose':
      return plain({ connection: 'close' })
    case 'slow':
      setTimeout(plain, delayOf(id))
      return
    case 'info':
      res.writeContinue()
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' })
      return plain()
    case 'chunked': {
      const third = Math.floor(body.length / 3)
      res.writeHead(200, { 'x-id': id, 'content-type': 'text/plain' })
      res.write(body.slice(0, third))
      res.write(body.slice(third, 2 * third))
      res.end(body.slice(2 * third))
      return
    }
    case 'large': {
      const quarter = Math.floor(body.length / 4)
      res.writeHead(200, { 'x-id': id, 'content-length': String(body.length) })
      for (let i = 0; i < 3; i++) res.write(body.slice(i * quarter, (i + 1) * quarter))
      res.end(body.slice(3 * quarter))
      return
    }
    case 's204':
    case 's304':
      res.writeHead(kind === 's204' ? 204 : 304, { 'x-id': id })
      res.end()
      return
    case 's502':
    case 's503':
      res.writeHead(kind === 's502' ? 502 : 503, { 'x-id': id, 'content-length': String(body.length) })
      res.end(body)
      return
    case 'reset':
      res.writeHead(200, { 'x-id': id, 'content-length': String(body.length + 1000) })
      res.write(body)
      setImmediate(() => socket.destroy())
      return
    case 'reset0':
      socket.destroy()
      return
  }
  const raw = rawAnswer(kind, id, body)
  if (raw === null) {
    const unknown = `id=${id};unknown\n`
    res.writeHead(404, { 'x-id': id, 'content-length': String(unknown.length) })
    res.end(unknown)
    return
  }
  // Past node:http's response object, straight to the socket; the connection is kept (the
  // proxy must not reuse it) except where the answer is delimited by the close or ambiguous.
  socket.write(raw, 'latin1')
  if (kind === 'http10' || kind === 'lfresp') socket.end()
}

function onUpgrade(stats: UpstreamStats, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  stats.upgrades++
  socket.on('error', () => {})
  // As any server: the proxy's FIN is answered with ours (node:http keeps upgraded sockets half-open).
  socket.on('end', () => socket.end())
  const m = /^\/(ws-[a-z-]+)\/([^/?]+)/.exec(req.url ?? '')
  const id = m?.[2] ?? ''
  const accept = () => {
    if (socket.destroyed) return
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-id: ${id}\r\n\r\n`)
    if (head.length > 0) socket.write(head)
    socket.on('data', (d: Buffer) => socket.write(d))
  }
  const declined = `id=${id};declined\n`
  switch (m?.[1]) {
    case 'ws-accept':
      return accept()
    case 'ws-slow':
      setTimeout(accept, 5)
      return
    case 'ws-decline':
      // Declined on the raw socket, which stays open: the case that crashed the proxy once.
      socket.write(`HTTP/1.1 404 Not Found\r\nx-id: ${id}\r\nContent-Length: 0\r\n\r\n`)
      return
    case 'ws-decline-close':
      socket.end(`HTTP/1.1 404 Not Found\r\nx-id: ${id}\r\nContent-Length: 0\r\n\r\n`)
      return
    case 'ws-decline-body':
      socket.write(`HTTP/1.1 404 Not Found\r\nx-id: ${id}\r\nContent-Length: ${declined.length}\r\n\r\n${declined}`)
      return
    default:
      socket.destroy()
  }
}

export async function startUpstream(stats: UpstreamStats, nested: ReadonlySet<string>): Promise<Upstream> {
  const sockets = new Set<Socket>()
  const server = http.createServer({ maxHeaderSize: 64 * 1024, keepAliveTimeout: 5_000 }, (req, res) => {
    stats.requests++
    req.on('error', () => {})
    res.on('error', () => {})
    const m = /^\/r\/([^/?]+)\/([^/?]+)/.exec(req.url ?? '')
    if (m === null) {
      req.resume()
      req.on('end', () => {
        res.writeHead(404, { 'content-length': '0' })
        res.end()
      })
      return
    }
    const [, id, kind] = m as unknown as [string, string, string]
    if (nested.has(id)) stats.nested++
    if (kind === 'early') {
      answer(req, res, id, kind, answerBody(id, kind, 0, ''))
      req.resume()
      return
    }
    const hash = createHash('sha1')
    let length = 0
    req.on('data', (c: Buffer) => {
      hash.update(c)
      length += c.length
    })
    req.on('end', () => answer(req, res, id, kind, answerBody(id, kind, length, hash.digest('hex'))))
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => onUpgrade(stats, req, socket, head))
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A reset or a close mid-request is a client (the proxy) going away; a parse error is the
    // proxy sending something malformed, which it must never do.
    if (err.code === 'HPE_INVALID_EOF_STATE') stats.cut++
    else if (err.code?.startsWith('HPE_')) stats.malformed[err.code] = (stats.malformed[err.code] ?? 0) + 1
    socket.destroy()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    get open() {
      return sockets.size
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      }),
  }
}
