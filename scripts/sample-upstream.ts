// A sample upstream for the demo: answers who it is, and registers itself in ZooKeeper.
//   node dist/scripts/sample-upstream.js <name> <zookeeper connect> <service path> [weight]
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { register } from '../lib/discovery/registry.js'

const [name = 'a', connect = '127.0.0.1:2181', servicePath = '/services/example', weight = '1'] = process.argv.slice(2)

const server = http.createServer((req, res) => {
  const body = JSON.stringify({ instance: name, method: req.method, url: req.url, pid: process.pid }) + '\n'
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-instance': name })
  res.end(body)
})
// SAMPLE_HOST (containers): listen on every interface and register under that host name.
const host = process.env.SAMPLE_HOST
server.listen(host ? 8000 : 0, host ? '0.0.0.0' : '127.0.0.1', async () => {
  const { port } = server.address() as AddressInfo
  const reg = await register({ connect, path: servicePath, host: host ?? '127.0.0.1', port, weight: Number(weight), name: `instance-${name}` })
  console.log(`sample upstream ${name} on 127.0.0.1:${port}, registered as ${reg.znode}`)
  const stop = async () => {
    await reg.close()
    server.close()
    process.exit(0)
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
})
