// The baseline Node proxy: http-proxy (its maintained fork, http-proxy-3) over a keep-alive agent, round-robin over the upstreams.
//   node dist/bench/http-proxy-baseline.js <port> '[upstream ports]'
import http from 'node:http'
import { createProxyServer } from 'http-proxy-3'

const port = Number(process.argv[2])
const upstreams = JSON.parse(process.argv[3] ?? '[]') as number[]
const agent = new http.Agent({ keepAlive: true, maxSockets: 128 })
const proxy = createProxyServer({ agent, xfwd: true })
proxy.on('error', (_err, _req, res) => {
  const r = res as http.ServerResponse
  if (!r.headersSent) r.writeHead(502)
  r.end()
})
let next = 0
http
  .createServer((req, res) => {
    const target = `http://127.0.0.1:${upstreams[next++ % upstreams.length]}`
    proxy.web(req, res, { target })
  })
  .listen(port, '127.0.0.1')
process.once('SIGTERM', () => process.exit(0))
