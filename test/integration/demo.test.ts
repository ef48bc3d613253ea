import { expect } from 'chai'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { freePort } from '../../scripts/zookeeper.js'
import { send, waitFor } from '../support/helpers.js'

const DEMO = fileURLToPath(new URL('../../scripts/demo.js', import.meta.url))

describe('npm run demo', function () {
  this.timeout(60_000)

  it('serves three registered upstreams through the proxy and stops everything on SIGINT', async () => {
    const [port, admin, zk] = [await freePort(), await freePort(), await freePort()]
    const demo = spawn(process.execPath, [DEMO], {
      env: { ...process.env, ZP_DEMO_LISTEN: `127.0.0.1:${port}`, ZP_DEMO_ADMIN: `127.0.0.1:${admin}`, ZP_DEMO_ZK_PORT: String(zk) },
      stdio: 'ignore',
    })
    const exited = new Promise<number | null>((resolve) => demo.once('exit', resolve))
    try {
      const seen = new Set<string>()
      await waitFor(async () => {
        const r = await send(port, '/hello')
        if (r.status === 200) seen.add(JSON.parse(r.body).instance)
        return seen.size === 3
      }, 'all three sample upstreams', 30_000, 50)
      expect([...seen].sort()).to.deep.equal(['a', 'b', 'c'])
    } finally {
      demo.kill('SIGINT')
    }
    expect(await exited).to.equal(0)
    // Everything it started is gone: the proxy and ZooKeeper ports refuse.
    await waitFor(async () => (await send(port).then(() => false, () => true)), 'the proxy port to close')
    const zkGone = await new Promise<boolean>((resolve) => {
      import('node:net').then(({ connect }) => {
        const s = connect(zk, '127.0.0.1')
        s.once('connect', () => (s.destroy(), resolve(false)))
        s.once('error', () => resolve(true))
      })
    })
    expect(zkGone).to.equal(true)
  })
})
