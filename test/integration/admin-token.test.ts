// The admin token (issue 14): with one set, every admin endpoint but /healthz and /readyz
// answers 401 without `Authorization: Bearer <token>`; the token may come from the config, a file
// beside it, or the environment.

import { expect } from 'chai'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig, validateConfig } from '../../lib/config.js'
import { ADMIN_ENDPOINTS } from '../../lib/ops/admin.js'
import { deadPort, putNode, spawnNode, startProxy, tempDir, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))

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

  /** A concrete request for each method an entry of the router's table serves, and what a right token gets. */
  function probes(instance: string): { method: string; path: string; body?: string; open: boolean }[] {
    return ADMIN_ENDPOINTS.flatMap((e) => {
      const path = e.path.replace('{name}', 'a').replace('{host:port}', instance)
      expect(path, `a {segment} of ${e.path} this test cannot fill in`).not.to.include('{')
      return e.methods.map((method) => ({ method, path, open: e.open === true, ...(method === 'PUT' ? { body: '{"weight": 2}' } : {}) }))
    })
  }

  async function ask(port: number, method: string, endpoint: string, authorization?: string, body?: string): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${port}${endpoint}`, { method, headers: authorization === undefined ? {} : { authorization }, ...(body === undefined ? {} : { body }) })
    await res.arrayBuffer()
    return res.status
  }

  it("asks for the token on every endpoint of the router's table but /healthz and /readyz, with every method", async () => {
    // The table is the router's own (a path not in it is a 404 before any handler): an endpoint
    // added to it is probed here without being named.
    const dir = tempDir(closers)
    const file = path.join(dir, 'proxy.json')
    const raw = { ...base(), admin: { listen: '127.0.0.1:0', token: 's3cret-token' } }
    writeFileSync(file, JSON.stringify(raw))
    const instancePort = await deadPort(closers)
    await putNode(ctx.admin, `${raw.services[0]!.path}/i`, { host: '127.0.0.1', port: instancePort })
    const p = await startProxy(await loadConfig(file), { configFile: file })
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'the instance')
    const all = probes(`127.0.0.1:${instancePort}`)
    expect(all.map((x) => `${x.method} ${x.path.split('/')[1]}`)).to.include.members(['POST reload', 'PUT services', 'DELETE services'])
    const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH']
    for (const { method, path: endpoint, body, open } of all) {
      const what = `${method} ${endpoint}`
      if (open) {
        expect(await ask(p.adminPort, method, endpoint), what).to.equal(200)
        continue
      }
      // Whatever the method, listed or not: no answer but 401 before the token.
      for (const m of methods)
        for (const auth of [undefined, 'Bearer wrong-token!', 'Bearer s3cret-token!', 'Bearer ', 's3cret-token', 'Bearer s3cret-toke'])
          expect(await ask(p.adminPort, m, endpoint, auth, m === 'PUT' || m === 'POST' || m === 'PATCH' ? '{"weight": 2}' : undefined), `${m} ${endpoint} ${auth}`).to.equal(401)
      expect(await ask(p.adminPort, method, endpoint, 'Bearer s3cret-token', body), what).to.equal(200)
    }
    // Paths outside the table are refused alike: no telling which exist without the token.
    for (const endpoint of ['/nope', '/services/a/instances/127.0.0.1:1', '/upstreams/x', '/reload/'])
      for (const m of methods) expect(await ask(p.adminPort, m, endpoint, m === 'GET' ? undefined : 'Bearer wrong-token!'), `${m} ${endpoint}`).to.equal(401)
    expect(await ask(p.adminPort, 'GET', '/nope', 'Bearer s3cret-token')).to.equal(404)
  })

  it('takes the token as Bearer (any case) or as the password of HTTP Basic, and nothing else', async () => {
    const p = await startProxy(await validateConfig({ ...base(), admin: { listen: '127.0.0.1:0', token: 's3cret-token' } }, '.', {}))
    closers.push(() => p.close())
    expect(await status(p.adminPort, '/upstreams', 'Bearer s3cret-token')).to.equal(200)
    // HTTP Basic, the token as the password (what a browser sends after its prompt), any user.
    const basic = (pair: string) => `Basic ${Buffer.from(pair).toString('base64')}`
    expect(await status(p.adminPort, '/upstreams', basic('ops:s3cret-token'))).to.equal(200)
    expect(await status(p.adminPort, '/upstreams', basic(':s3cret-token'))).to.equal(200)
    for (const bad of [basic('s3cret-token:x'), basic('s3cret-token'), basic('ops:s3cret-token!'), 'Basic !!!'])
      expect(await status(p.adminPort, '/upstreams', bad), bad).to.equal(401)
    expect(await status(p.adminPort, '/metrics', 'bearer s3cret-token')).to.equal(200)
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

  describe('whitespace around the token (issue 21 item 9): one rule for all three sources, trimmed', () => {
    const padded = ['tok ', ' tok', '\ttok\n', '  tok  ', '\r\ntok\r\n']
    /** Where a token can come from, as validateConfig's (raw config, env) for `text`. */
    function sources(dir: string, text: string): [string, object, NodeJS.ProcessEnv][] {
      const file = `token-${Math.random().toString(36).slice(2)}`
      writeFileSync(path.join(dir, file), text)
      return [
        ['admin.token', { ...base(), admin: { listen: '127.0.0.1:0', token: text } }, {}],
        ['admin.tokenFile', { ...base(), admin: { listen: '127.0.0.1:0', tokenFile: file } }, {}],
        ['ZOO_PROXY_ADMIN_TOKEN', { ...base(), admin: '127.0.0.1:0' }, { ZOO_PROXY_ADMIN_TOKEN: text }],
      ]
    }

    it('takes the trimmed token from admin.token, admin.tokenFile and ZOO_PROXY_ADMIN_TOKEN alike, as Bearer and as Basic', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-token-'))
      closers.push(async () => rmSync(dir, { recursive: true, force: true }))
      for (const text of padded)
        for (const [where, raw, env] of sources(dir, text)) expect((await validateConfig(raw, dir, env)).adminToken, `${where} ${JSON.stringify(text)}`).to.equal('tok')
      // Served: the operator who wrote "tok " is let in with the token as anyone would send it.
      const p = await startProxy(await validateConfig({ ...base(), admin: { listen: '127.0.0.1:0', token: 'tok ' } }, dir, {}))
      closers.push(() => p.close())
      const basic = (pair: string) => `Basic ${Buffer.from(pair).toString('base64')}`
      for (const auth of ['Bearer tok', 'Bearer  tok ', basic('ops:tok'), basic('ops:tok ')]) expect(await status(p.adminPort, '/upstreams', auth), auth).to.equal(200)
      for (const auth of ['Bearer to', 'Bearer tok x', basic('ops:to k')]) expect(await status(p.adminPort, '/upstreams', auth), auth).to.equal(401)
    })

    it('refuses a token that is only whitespace or holds anything but visible ASCII, naming where it came from (zoo-proxy check: exit 2)', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-token-'))
      closers.push(async () => rmSync(dir, { recursive: true, force: true }))
      for (const text of [' ', '\n', ' \t\r\n '])
        for (const [where, raw, env] of sources(dir, text)) {
          const err = await validateConfig(raw, dir, env).catch((e: unknown) => e)
          expect((err as { problems?: string[] }).problems?.[0], `${where} ${JSON.stringify(text)}`).to.match(new RegExp(`^${where.replace('.', '\\.')}.*: the admin token is only whitespace$`))
        }
      // Anything but visible ASCII inside it is refused too: a header carries bytes, so a UTF-8 or
      // control character would match for one client's encoding and not for another's.
      for (const [text, at] of [['tök', 'U+00F6 at 1'], ['to k', 'U+0020 at 2'], ['tok\u0000x', 'U+0000 at 3'], ['\u{1F511}key', 'U+1F511 at 0'], ['a\tb', 'U+0009 at 1']] as const)
        for (const [where, raw, env] of sources(dir, text)) {
          const err = await validateConfig(raw, dir, env).catch((e: unknown) => e)
          expect((err as { problems?: string[] }).problems?.[0], `${where} ${JSON.stringify(text)}`).to.match(new RegExp(`^${where.replace('.', '\\.')}.*: the admin token may hold only visible ASCII characters \\(found ${at.replace('+', '\\+')}\\)$`))
        }
      writeFileSync(path.join(dir, 'proxy.json'), JSON.stringify({ ...base(), admin: { listen: '127.0.0.1:0', token: '   ' } }))
      const child = spawnNode(closers, [CLI, 'check', '--config', path.join(dir, 'proxy.json')])
      expect(await child.exited).to.equal(2)
      expect(child.stderr().trim()).to.equal('admin.token: the admin token is only whitespace')
    })
  })

  it('asks for nothing without a token', async () => {
    const p = await startProxy(await validateConfig({ ...base(), admin: { listen: '127.0.0.1:0' } }, '.', {}))
    closers.push(() => p.close())
    expect(await status(p.adminPort, '/upstreams')).to.equal(200)
  })
})
