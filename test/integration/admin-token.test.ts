// The admin token (issue 14): with one set, every admin endpoint but /healthz and /readyz
// answers 401 without `Authorization: Bearer <token>`; the token may come from the config, a file
// beside it, or the environment.

import { expect } from 'chai'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { loadConfig, validateConfig } from '../../lib/config.js'
import { startProxy, uniquePath, useClosers, useZooKeeper } from '../support/helpers.js'

describe('the admin token (real ZooKeeper)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  const base = () => ({
    listen: '127.0.0.1:0',
    zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000 },
    log: { level: 'silent' },
    services: [{ name: 'a', path: uniquePath('token') }],
  })

  async function status(port: number, endpoint: string, token?: string): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${port}${endpoint}`, { headers: token === undefined ? {} : { authorization: token } })
    await res.arrayBuffer()
    return res.status
  }

  it('asks for the token everywhere but /healthz and /readyz', async () => {
    const p = await startProxy(await validateConfig({ ...base(), admin: { listen: '127.0.0.1:0', token: 's3cret-token' } }, '.', {}))
    closers.push(() => p.close())
    const open = { '/healthz': 200, '/readyz': 200 }
    for (const [endpoint, code] of Object.entries(open)) expect(await status(p.adminPort, endpoint), endpoint).to.equal(code)
    for (const endpoint of ['/upstreams', '/metrics', '/nope']) {
      expect(await status(p.adminPort, endpoint), endpoint).to.equal(401)
      expect(await status(p.adminPort, endpoint, 'Bearer wrong-token!'), endpoint).to.equal(401)
      expect(await status(p.adminPort, endpoint, 's3cret-token'), endpoint).to.equal(401)
    }
    expect(await status(p.adminPort, '/upstreams', 'Bearer s3cret-token')).to.equal(200)
    // HTTP Basic, the token as the password (what a browser sends after its prompt), any user.
    const basic = (pair: string) => `Basic ${Buffer.from(pair).toString('base64')}`
    expect(await status(p.adminPort, '/upstreams', basic('ops:s3cret-token'))).to.equal(200)
    expect(await status(p.adminPort, '/upstreams', basic(':s3cret-token'))).to.equal(200)
    for (const bad of [basic('s3cret-token:x'), basic('s3cret-token'), basic('ops:s3cret-token!'), 'Basic !!!'])
      expect(await status(p.adminPort, '/upstreams', bad), bad).to.equal(401)
    expect(await status(p.adminPort, '/metrics', 'bearer s3cret-token')).to.equal(200)
    expect(await status(p.adminPort, '/nope', 'Bearer s3cret-token')).to.equal(404)
  })

  it('reads the token from tokenFile, relative to the config file, or from ZOO_PROXY_ADMIN_TOKEN', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-token-'))
    closers.push(async () => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(path.join(dir, 'admin.token'), 'from-the-file\n')
    writeFileSync(path.join(dir, 'proxy.json'), JSON.stringify({ ...base(), admin: { listen: '127.0.0.1:0', tokenFile: 'admin.token' } }))
    expect((await loadConfig(path.join(dir, 'proxy.json'))).adminToken).to.equal('from-the-file')
    const fromEnv = await validateConfig({ ...base(), admin: '127.0.0.1:0' }, dir, { ZOO_PROXY_ADMIN_TOKEN: 'from-the-env' })
    expect(fromEnv.adminToken).to.equal('from-the-env')
    const p = await startProxy(fromEnv)
    closers.push(() => p.close())
    expect(await status(p.adminPort, '/upstreams')).to.equal(401)
    expect(await status(p.adminPort, '/upstreams', 'Bearer from-the-env')).to.equal(200)
    const missing = await validateConfig({ ...base(), admin: { listen: '127.0.0.1:0', tokenFile: 'nope.token' } }, dir, {}).catch((e: unknown) => e)
    expect((missing as { problems: string[] }).problems[0]).to.match(/^admin\.tokenFile: cannot read .*nope\.token: ENOENT/)
  })

  it('asks for nothing without a token', async () => {
    const p = await startProxy(await validateConfig({ ...base(), admin: { listen: '127.0.0.1:0' } }, '.', {}))
    closers.push(() => p.close())
    expect(await status(p.adminPort, '/upstreams')).to.equal(200)
  })
})
