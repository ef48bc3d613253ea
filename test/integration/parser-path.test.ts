// The portable parser path (issue 15) as a user meets it: the proxy started with
// ZOO_PROXY_PARSER=portable, and on a Node whose parser binding is gone (simulated by a preload
// that hides `_http_common` from user code, as a future Node might), forwards, fails over, refuses
// malformed requests, and says once, at warn level, which path it took and why. The forwarding,
// failover and hostile-input suites also run whole on this path in CI (.ci/run).

import { expect } from 'chai'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import process from 'node:process'
import { deadPort, putNode, startUpstream, tempDir, uniquePath, useClosers, useZooKeeper } from '../support/helpers.js'
import type { Closers } from '../support/helpers.js'
import { raw, spawnProxy } from '../support/wire.js'
import type { ProxyProcess } from '../support/wire.js'

interface LogLine {
  level: number
  msg: string
  parser?: string
  reading?: string
  reason?: string
}

function logLines(proxy: ProxyProcess): LogLine[] {
  return proxy
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine)
}

describe('the portable parser path', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()
  const closers: Closers = useClosers()

  /** Runs the proxy as `env` and `nodeArgs` say, and drives it through one of everything. */
  async function exercise(env: NodeJS.ProcessEnv, nodeArgs: string[] = []): Promise<ProxyProcess> {
    const up = await startUpstream('u', (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => res.end(`${req.method} ${req.url} ${Buffer.concat(chunks).length}`))
    })
    closers.push(() => up.close())
    const svc = uniquePath('portable')
    // The first instance refuses connections: every request fails over to the live one.
    await putNode(ctx.admin, `${svc}/dead`, { host: '127.0.0.1', port: await deadPort(closers) })
    await putNode(ctx.admin, `${svc}/live`, { host: '127.0.0.1', port: up.port })
    const proxy = await spawnProxy(
      {
        zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000 },
        services: [{ name: 'svc', path: svc, strategy: 'round-robin', retry: { bufferBytes: 65536 } }],
      },
      nodeArgs,
      env,
    )
    closers.push(() => proxy.stop())
    for (let i = 0; i < 4; i++) {
      const r = await raw(proxy.port, `POST /p${i} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`)
      expect(r.got).to.match(/^HTTP\/1\.1 200 /)
      expect(r.got).to.match(new RegExp(`POST /p${i} 5$`))
    }
    const chunked = await raw(proxy.port, 'POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n')
    expect(chunked.got).to.match(/POST \/c 5$/)
    const pipelined = await raw(proxy.port, 'GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', (g) => g.includes('GET /b 0'))
    expect(pipelined.got.indexOf('GET /a 0')).to.be.lessThan(pipelined.got.indexOf('GET /b 0'))
    for (const smuggle of [
      'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'GET / HTTP/1.1\nHost: t\n\n',
      'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n',
    ]) {
      const bad = await raw(proxy.port, smuggle)
      expect(bad.got, smuggle).to.match(/^HTTP\/1\.1 400 /)
      expect(bad.closed).to.equal(true)
    }
    const hits = up.hits
    const big = await raw(proxy.port, `GET / HTTP/1.1\r\nHost: t\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`)
    // The proxy's own 431 (its JSON error), not the node:http upstream's: the head never left the proxy.
    expect(big.got).to.match(/^HTTP\/1\.1 431 [\s\S]*\r\n\r\n\{"error":"ZP_ERR_HEADERS_TOO_LARGE"/)
    expect(up.hits).to.equal(hits)
    expect(proxy.exited, proxy.stderr()).to.equal(null)
    return proxy
  }

  it('runs on it when ZOO_PROXY_PARSER=portable, and says so in one warn line', async () => {
    const proxy = await exercise({ ...process.env, ZOO_PROXY_PARSER: 'portable' })
    const said = logLines(proxy).filter((l) => l.parser !== undefined)
    expect(said).to.have.length(1)
    expect(said[0]).to.include({ level: 40, parser: 'portable', reason: 'ZOO_PROXY_PARSER=portable' })
    expect(said[0]!.msg).to.match(/portable/)
  })

  it("falls back to it when Node's parser binding is missing, and names the reason", async () => {
    const dir = tempDir(closers)
    const preload = path.join(dir, 'no-http-common.cjs')
    // What a Node without `_http_common` for user code would do: the require fails.
    writeFileSync(
      preload,
      `const Module = require('node:module')
const load = Module._load
Module._load = function (request, ...rest) {
  if (request === '_http_common') throw Object.assign(new Error("Cannot find module '_http_common'"), { code: 'MODULE_NOT_FOUND' })
  return load.call(this, request, ...rest)
}
`,
    )
    const env = { ...process.env }
    delete env.ZOO_PROXY_PARSER
    const proxy = await exercise(env, ['--require', preload])
    const said = logLines(proxy).filter((l) => l.parser !== undefined)
    expect(said).to.have.length(1)
    expect(said[0]).to.include({ level: 40, parser: 'portable' })
    expect(said[0]!.reason).to.match(/_http_common cannot be loaded/)
  })

  it("reads sockets through their stream when their handles are of another shape, and says so once", async function () {
    if (process.env.ZOO_PROXY_PARSER === 'portable') this.skip()
    const dir = tempDir(closers)
    const preload = path.join(dir, 'odd-handles.cjs')
    // What a Node whose socket handles changed shape would look like: not a stream base any more.
    writeFileSync(
      preload,
      `const net = require('node:net')
const emit = net.Server.prototype.emit
net.Server.prototype.emit = function (event, socket, ...rest) {
  if (event === 'connection' && socket && socket._handle) Object.defineProperty(socket._handle, 'isStreamBase', { value: false })
  return emit.call(this, event, socket, ...rest)
}
`,
    )
    const env = { ...process.env }
    delete env.ZOO_PROXY_PARSER
    const proxy = await exercise(env, ['--require', preload])
    const said = logLines(proxy).filter((l) => l.parser !== undefined)
    expect(said).to.have.length(1)
    expect(said[0]).to.include({ level: 40, parser: 'native', reading: 'stream', reason: 'the socket handle is not a stream base' })
    expect(said[0]!.msg).to.match(/portable path/)
  })

  it('is not taken, and not mentioned, where the binding is there', async function () {
    if (process.env.ZOO_PROXY_PARSER === 'portable') this.skip()
    const proxy = await exercise({ ...process.env })
    expect(logLines(proxy).filter((l) => l.parser !== undefined)).to.deep.equal([])
  })
})
