// Not a proxy: what Node's own socket I/O costs a small GET on this machine, the floor under any
// proxy written on node:net. Each client read is taken to be one whole request and answered by
// sending one fixed GET on that client's own upstream connection (round-robin per connection);
// each upstream read is taken to be one whole answer and written back as it is. Two reads and two
// writes a request, as zoo-proxy makes, and nothing else: no parsing, no pool, no timers, no
// headers. Right only for the `get` scenario's load (one request at a time per connection, answers
// that fit in one read).
//   node dist/bench/node-floor.js <port> '[upstream ports]'
import net from 'node:net'

const port = Number(process.argv[2])
const upstreams = JSON.parse(process.argv[3] ?? '[]') as number[]
const REQUEST = 'GET / HTTP/1.1\r\nhost: upstream\r\n\r\n'
let next = 0
net
  .createServer({ noDelay: true }, (client) => {
    const buffer = Buffer.allocUnsafe(64 * 1024)
    const upstream = net.connect({
      host: '127.0.0.1',
      port: upstreams[next++ % upstreams.length]!,
      noDelay: true,
      onread: {
        buffer,
        callback: (n: number) => {
          // A copy: the read buffer is read into again before a slow write would be done with it.
          client.write(Buffer.from(buffer.subarray(0, n)))
          return true
        },
      },
    })
    client.on('data', () => upstream.write(REQUEST, 'latin1'))
    client.on('error', () => {})
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
  })
  .listen(port, '127.0.0.1')
process.once('SIGTERM', () => process.exit(0))
