// A deprecation tripwire: the proxy runs with --throw-deprecation and goes through every kind of
// exchange, so a runtime deprecation of anything it uses (Node's parser binding, a socket handle
// method, an API of a dependency) fails CI on the Node line that brings it, instead of surprising a
// user. CI runs this on every supported line (.ci/run).

import { expect } from 'chai'
import net from 'node:net'
import process from 'node:process'
import { putNode, startUpstream, uniquePath, useZooKeeper } from '../support/helpers.js'
import { raw, spawnProxy } from '../support/wire.js'

describe(`the proxy under --throw-deprecation (Node ${process.version})`, function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()

  it('serves plain, streamed, upgraded and malformed requests, and stops cleanly, with no deprecation', async () => {
    const up = await startUpstream('u', (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => res.end(`got ${Buffer.concat(chunks).length}`))
    })
    const echo = net.createServer((s) => {
      s.once('data', () => {
        s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
        s.pipe(s)
      })
      s.on('error', () => {})
    })
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r))
    const path = uniquePath('deprecation')
    await putNode(ctx.admin, `${path}/u`, { host: '127.0.0.1', port: up.port })
    const wsPath = uniquePath('deprecation-ws')
    await putNode(ctx.admin, `${wsPath}/e`, { host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port })
    const proxy = await spawnProxy(
      {
        zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000 },
        services: [
          { name: 'plain', path, retry: { bufferBytes: 1024 } },
          { name: 'ws', path: wsPath, match: { pathPrefix: '/ws' } },
        ],
      },
      ['--throw-deprecation'],
    )
    try {
      const plain = await raw(proxy.port, 'GET / HTTP/1.1\r\nHost: t\r\n\r\n', (g) => g.endsWith('got 0'))
      expect(plain.got).to.match(/^HTTP\/1\.1 200 /)
      const body = 'x'.repeat(5000)
      const streamed = await raw(proxy.port, `POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${(5000).toString(16)}\r\n${body}\r\n0\r\n\r\n`, (g) => g.endsWith('got 5000'))
      expect(streamed.got).to.match(/^HTTP\/1\.1 200 /)
      const ws = await raw(proxy.port, 'GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nping', (g) => g.endsWith('ping'))
      expect(ws.got, proxy.stderr()).to.match(/^HTTP\/1\.1 101 /)
      const bad = await raw(proxy.port, 'GET / HTTP/1.1\nHost: t\n\n')
      expect(bad.got).to.match(/^HTTP\/1\.1 400 /)
      const admin = await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)
      expect(admin.status).to.equal(200)
      expect(proxy.exited, proxy.stderr()).to.equal(null)
    } finally {
      await proxy.stop()
      await up.close()
      echo.close()
    }
    expect(proxy.exited).to.deep.equal({ code: 0, signal: null })
    expect(proxy.stderr()).not.to.match(/DeprecationWarning|DEP\d{4}/)
    // Nor did a deprecation move it off Node's parser without a word: a require of
    // `_http_common` that threw would have put it on the portable path (lib/http/h1/engine.ts).
    if (process.env.ZOO_PROXY_PARSER !== 'portable') expect(proxy.stdout()).not.to.match(/"parser":"portable"/)
  })
})
