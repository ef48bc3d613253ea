// Not a proxy: what Node's own HTTP/2 costs a small GET on this machine, the floor under any proxy
// whose client side is node:http2. A bare node:http2 server that answers every stream itself
// (200, `ok`), with no upstream, no routing and no timers: the frames, HPACK and the socket I/O
// node:http2 does for each stream, and nothing else. Over TLS (ALPN h2) when given a certificate.
//   node dist/bench/h2-floor.js <port> [<cert.pem> <key.pem>]
import { readFileSync } from 'node:fs'
import http2 from 'node:http2'

const port = Number(process.argv[2])
const [certFile, keyFile] = process.argv.slice(3)
const HEAD = { ':status': 200, 'content-type': 'text/plain', 'content-length': '2' }
const answer = (stream: http2.ServerHttp2Stream) => {
  stream.on('error', () => {})
  stream.respond(HEAD)
  stream.end('ok')
}
const server =
  certFile !== undefined && keyFile !== undefined
    ? http2.createSecureServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) })
    : http2.createServer()
server.on('stream', answer)
server.on('sessionError', () => {})
// h2load ends a timed run with GOAWAY and waits for each connection to close; node:http2 over TLS
// keeps the socket open after a client's GOAWAY, so the session is closed here once its streams end.
server.on('session', (session) => session.on('goaway', () => session.close()))
server.listen(port, '127.0.0.1')
process.once('SIGTERM', () => process.exit(0))
