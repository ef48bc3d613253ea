// Upstream servers for the benchmarks, all in this one process:
//   node dist/bench/upstream-server.js '[{"name":"a","delayMs":5,"bytes":2}]'
// Prints their ports as one JSON line, then serves until SIGTERM.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { UpstreamSpec } from './common.js'

const specs = JSON.parse(process.argv[2] ?? '[]') as UpstreamSpec[]
/** `GET /big` answers 1 MiB, for the streamed-response scenario. */
const BIG = Buffer.alloc(1024 * 1024, 'x')
const servers = await Promise.all(
  specs.map(
    (s) =>
      new Promise<http.Server>((resolve) => {
        const body = Buffer.alloc(s.bytes ?? 2, 'x')
        const headers = { 'content-type': 'text/plain', 'content-length': String(body.length), 'x-instance': s.name }
        const bigHeaders = { ...headers, 'content-length': String(BIG.length) }
        const answer = (req: http.IncomingMessage, res: http.ServerResponse) => {
          // Drain a request body before answering, as a real service would.
          req.resume()
          req.once('end', () => {
            const big = req.url === '/big'
            res.writeHead(200, big ? bigHeaders : headers)
            res.end(big ? BIG : body)
          })
        }
        const server = http.createServer(
          s.delayMs ? (req, res) => setTimeout(() => answer(req, res), s.delayMs) : answer,
        )
        server.keepAliveTimeout = 60_000
        server.listen(s.port ?? 0, '127.0.0.1', () => resolve(server))
      }),
  ),
)
console.log(JSON.stringify(servers.map((s) => (s.address() as AddressInfo).port)))
process.once('SIGTERM', () => process.exit(0))
