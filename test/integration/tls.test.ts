// TLS toward clients (issue 14): `tls: { cert, key }` makes the listen address HTTPS only, with
// ALPN http/1.1 for an HTTP/1.1 client (one offering h2 gets it: h2-front.test.ts, issue 26), and
// the instance hears X-Forwarded-Proto: https.

import { expect } from 'chai'
import https from 'node:https'
import net from 'node:net'
import type tls from 'node:tls'
import { validateConfig } from '../../lib/config.js'
import { ConfigError } from '../../lib/errors.js'
import { useCerts } from '../support/certs.js'
import { makeConfig, putNode, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'

function httpsGet(port: number, ca: Buffer | undefined, path = '/'): Promise<{ status: number; body: string; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions & tls.ConnectionOptions = { host: '127.0.0.1', port, path, ca, agent: false, ALPNProtocols: ['http/1.1'] }
    const req = https.request(options, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), alpn: (res.socket as tls.TLSSocket).alpnProtocol }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('TLS toward clients (real ZooKeeper, certificates made by the test)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()
  // Removed after, even when a before-all failed (useCerts).
  const certs = useCerts()

  async function httpsProxy() {
    const up = await startUpstream('a')
    closers.push(() => up.close())
    const path = uniquePath('tls')
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: up.port })
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path }], { tls: { cert: certs.cert, key: certs.key } }))
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    return { up, p }
  }

  it('serves HTTPS with ALPN http/1.1, verified against the test CA, and says https upstream', async () => {
    const { up, p } = await httpsProxy()
    for (let i = 0; i < 3; i++) {
      const r = await httpsGet(p.port, certs.ca, `/s${i}`)
      expect(r).to.deep.equal({ status: 200, body: 'a', alpn: 'http/1.1' })
    }
    expect(up.seen.map((s) => [s.url, s.headers['x-forwarded-proto']])).to.deep.equal([
      ['/s0', 'https'],
      ['/s1', 'https'],
      ['/s2', 'https'],
    ])
  })

  it('is refused by a client that does not trust its certificate, and answers no plain HTTP', async () => {
    const { up, p } = await httpsProxy()
    const err = await httpsGet(p.port, undefined).then(
      () => null,
      (e: NodeJS.ErrnoException) => e,
    )
    expect(err?.code).to.equal('UNABLE_TO_VERIFY_LEAF_SIGNATURE')
    const plain = await new Promise<string>((resolve) => {
      const s = net.connect(p.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: t\r\n\r\n'))
      let got = ''
      s.on('data', (d) => (got += d.toString('latin1')))
      s.on('error', () => {})
      s.on('close', () => resolve(got))
    })
    expect(plain).not.to.match(/^HTTP\//)
    expect(up.hits).to.equal(0)
    // And it keeps serving.
    expect((await httpsGet(p.port, certs.ca)).status).to.equal(200)
  })

  it('refuses a config whose certificate file cannot be read, naming the field', async () => {
    const err = await validateConfig({ tls: { cert: 'missing.crt', key: certs.key }, services: [{ name: 'a', path: '/a' }] }, certs.dir).catch((e: unknown) => e)
    expect(err).to.be.instanceOf(ConfigError)
    expect((err as ConfigError).problems).to.deep.equal([`tls.cert: cannot read ${certs.dir}/missing.crt: ENOENT`])
  })
})
