// TLS toward instances (issue 14): an instance whose znode says "scheme": "https" (ours) or has
// an sslPort (Curator) is reached over TLS, verified against upstreamTls.ca (or the system's CAs:
// verification is never off); with cert and key the proxy proves itself too (mTLS). A certificate
// that does not verify is a 502.

import { expect } from 'chai'
import { readFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { useCerts } from '../support/certs.js'
import { makeConfig, putNode, send, startProxy, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'

describe('TLS toward instances (real ZooKeeper, certificates made by the test)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()
  const certs = useCerts()
  const other = useCerts()

  /** An HTTPS instance with the test certificate; `mtls`: it asks for a client certificate from the test CA. */
  async function httpsUpstream(mtls = false) {
    const seen: { proto: string | undefined; clientCert: boolean }[] = []
    const server = https.createServer(
      { cert: readFileSync(certs.cert), key: readFileSync(certs.key), ca: certs.ca, requestCert: mtls, rejectUnauthorized: mtls },
      (req, res) => {
        seen.push({ proto: req.headers['x-forwarded-proto'] as string | undefined, clientCert: (req.socket as TLSSocket).authorized })
        res.end('secure')
      },
    )
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    closers.push(
      () =>
        new Promise<void>((r) => {
          server.close(() => r())
          server.closeAllConnections()
        }),
    )
    return { port: (server.address() as AddressInfo).port, seen }
  }

  async function proxy(znode: object, extra: object = {}, service: object = {}) {
    const path = uniquePath('utls')
    await putNode(ctx.admin, `${path}/i`, znode)
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path, retry: { attempts: 1 }, ...service }], extra))
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    return p
  }

  it('reaches an instance that says "scheme": "https" over TLS, verified against upstreamTls.ca', async () => {
    const up = await httpsUpstream()
    const p = await proxy({ host: '127.0.0.1', port: up.port, scheme: 'https' }, { upstreamTls: { ca: certs.caCert } })
    for (let i = 0; i < 3; i++) expect(await send(p.port)).to.include({ status: 200, body: 'secure' })
    expect(up.seen).to.have.length(3)
    const report = (await (await fetch(`http://127.0.0.1:${p.adminPort}/upstreams`)).json()) as { services: { example: { instances: { scheme: string }[] } } }
    expect(report.services.example.instances[0]!.scheme).to.equal('https')
  })

  it('reaches a Curator instance on its sslPort over TLS, with the per-service upstreamTls', async () => {
    const up = await httpsUpstream()
    const curator = { name: 'example', id: 'x1', address: '127.0.0.1', port: 1, sslPort: up.port, payload: null, registrationTimeUTC: 0, serviceType: 'DYNAMIC' }
    const p = await proxy(curator, {}, { upstreamTls: { ca: certs.caCert } })
    expect(await send(p.port)).to.include({ status: 200, body: 'secure' })
  })

  it('answers 502 when the certificate does not verify: another CA, or no CA given (the system CAs)', async () => {
    const up = await httpsUpstream()
    for (const extra of [{ upstreamTls: { ca: other.caCert } }, {}]) {
      const p = await proxy({ host: '127.0.0.1', port: up.port, scheme: 'https' }, extra)
      const r = await send(p.port)
      expect(r.status).to.equal(502)
      expect(JSON.parse(r.body).error).to.equal('ZP_ERR_UPSTREAM_CONNECT')
      // An outlier failure: counted against the instance.
      expect(p.services[0]!.balancer.hosts[0]!.failures).to.be.at.least(1)
    }
    expect(up.seen).to.deep.equal([])
  })

  it('presents its client certificate to an instance that asks for one (mTLS), and is refused without', async () => {
    const up = await httpsUpstream(true)
    const withCert = await proxy({ host: '127.0.0.1', port: up.port, scheme: 'https' }, { upstreamTls: { ca: certs.caCert, cert: certs.cert, key: certs.key } })
    expect(await send(withCert.port)).to.include({ status: 200, body: 'secure' })
    expect(up.seen).to.deep.equal([{ proto: 'http', clientCert: true }])
    const without = await proxy({ host: '127.0.0.1', port: up.port, scheme: 'https' }, { upstreamTls: { ca: certs.caCert } })
    expect((await send(without.port)).status).to.equal(502)
    expect(up.seen).to.have.length(1)
  })
})
