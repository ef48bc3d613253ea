// ZooKeeper access control (issue 14): `register --auth user:pass` makes nodes only the credential
// can change or delete (creator all, world read), and a proxy with zookeeper.auth reads a path
// whose ACL denies everyone else.

import { expect } from 'chai'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import zookeeper from 'node-zookeeper-client'
import { register } from '../../lib/discovery/registry.js'
import { ZkSession } from '../../lib/discovery/zk-session.js'
import { silentLogger } from '../../lib/log.js'
import { makeConfig, send, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))

/** The ZooKeeper error code of a failed call (NO_AUTH is -102), or null when it succeeded. */
async function codeOf(call: Promise<unknown>): Promise<number | null> {
  try {
    await call
    return null
  } catch (err) {
    const e = err as { getCode?: () => number }
    return typeof e.getCode === 'function' ? e.getCode() : -1
  }
}

describe('ZooKeeper access control (real ZooKeeper)', function () {
  this.timeout(30_000)
  const ctx = useZooKeeper()
  const closers = useClosers()
  // /test made open here: a protected session making it first would lock the other tests out.
  before(() => ctx.admin.ensureParents('/test/x'))

  function session(auth?: string): ZkSession {
    const s = new ZkSession({ connect: ctx.zk.connectString, sessionTimeoutMs: 4000, logger: silentLogger, ...(auth === undefined ? {} : { auth: [{ scheme: 'digest', credentials: auth }] }) })
    s.start()
    closers.push(async () => s.close())
    return s
  }

  it('register --auth makes nodes an unauthenticated client cannot delete, overwrite or add to', async () => {
    const path = uniquePath('acl')
    const child = spawn(process.execPath, [CLI, 'register', '--zookeeper', ctx.zk.connectString, '--path', path, '--host', '127.0.0.1', '--port', '9999', '--auth', 'team:s3cret', '--session-timeout-ms', '4000'], { stdio: 'ignore' })
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    try {
      const anyone = session()
      const znode = `${path}/127.0.0.1:9999`
      await waitFor(() => anyone.exists(znode), 'the instance node')
      const NO_AUTH = zookeeper.Exception.NO_AUTH
      expect(await codeOf(anyone.remove(znode))).to.equal(NO_AUTH)
      expect(await codeOf(anyone.setData(znode, Buffer.from('{"host":"10.6.6.6","port":1}')))).to.equal(NO_AUTH)
      expect(await codeOf(anyone.create(`${path}/fake`, Buffer.from('{"host":"10.6.6.6","port":1}'), 'ephemeral'))).to.equal(NO_AUTH)
      // Everyone may still read it: proxies without credentials discover the instance.
      expect(JSON.parse((await anyone.getData(znode))!.toString()).port).to.equal(9999)
      // The credential's holder may change it.
      const holder = session('team:s3cret')
      expect(await codeOf(holder.setData(znode, Buffer.from('{"host":"127.0.0.1","port":9999,"weight":2}')))).to.equal(null)
    } finally {
      child.kill('SIGTERM')
    }
    expect(await exited).to.equal(0)
  })

  it('reads, with zookeeper.auth, a service whose ACL lets no one else read it', async () => {
    const up = await startUpstream('private')
    closers.push(() => up.close())
    const path = uniquePath('private')
    const owner = session('ops:pw')
    await owner.ensureParents(path)
    // Only the credential may do anything here, reading included.
    const onlyOwner = [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('auth', ''))]
    await owner.create(path, Buffer.alloc(0), 'persistent', onlyOwner)
    await owner.create(`${path}/i`, Buffer.from(JSON.stringify({ host: '127.0.0.1', port: up.port })), 'persistent', onlyOwner)
    expect(await codeOf(session().getChildren(path))).to.equal(zookeeper.Exception.NO_AUTH)
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'private', path }], { zookeeper: { connect: ctx.zk.connectString, sessionTimeoutMs: 4000, auth: [{ scheme: 'digest', credentials: 'ops:pw' }] } }))
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'the private instance')
    expect((await send(p.port)).body).to.equal('private')
  })

  it('with register() as a library too: a holder of the credential registers, others only read', async () => {
    const path = uniquePath('acl-lib')
    const reg = await register({ connect: ctx.zk.connectString, path, host: '127.0.0.1', port: 8888, sessionTimeoutMs: 4000, auth: [{ scheme: 'digest', credentials: 'lib:pw' }] })
    closers.push(() => reg.close())
    expect(await codeOf(session().remove(reg.znode))).to.equal(zookeeper.Exception.NO_AUTH)
  })
})
