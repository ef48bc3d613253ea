import { expect } from 'chai'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { freePort } from '../../scripts/zookeeper.js'
import { listeningPorts, send, spawnNode, useClosers, waitThroughErrors } from '../support/helpers.js'
import type { Child } from '../support/helpers.js'

const DEMO = fileURLToPath(new URL('../../scripts/demo.js', import.meta.url))

/** Resolves true once a connection to `port` is refused. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => (s.destroy(), resolve(false)))
    s.once('error', () => resolve(true))
  })
}

describe('npm run demo', function () {
  this.timeout(60_000)
  const closers = useClosers()

  /**
   * The demo with its proxy on ports the kernel picks (read back from its log) and ZooKeeper on a
   * free port of ours, picked again when another process takes it first (ZooKeeper cannot listen
   * on port 0). Its whole process group is killed after the test if something is left.
   */
  async function startDemo(): Promise<{ demo: Child; port: number; zk: number }> {
    for (let attempt = 1; ; attempt++) {
      const zk = await freePort()
      const demo = spawnNode(closers, [DEMO], { env: { ...process.env, ZP_DEMO_LISTEN: '127.0.0.1:0', ZP_DEMO_ADMIN: '127.0.0.1:0', ZP_DEMO_ZK_PORT: String(zk) }, group: true })
      const started = await Promise.race([listeningPorts(demo).then(({ port }) => port), demo.exited.then(() => null)])
      if (started !== null) return { demo, port: started, zk }
      if (attempt >= 3 || !/EADDRINUSE/.test(demo.stderr())) throw new Error(`the demo exited before serving:\n${demo.stdout()}\n${demo.stderr()}`)
    }
  }

  it('serves three registered upstreams through the proxy and stops everything on SIGINT', async () => {
    const { demo, port, zk } = await startDemo()
    const seen = new Set<string>()
    await waitThroughErrors(async () => {
      const r = await send(port, '/hello')
      if (r.status === 200) seen.add(JSON.parse(r.body).instance)
      return seen.size === 3
    }, 'all three sample upstreams', 30_000, 50)
    expect([...seen].sort()).to.deep.equal(['a', 'b', 'c'])
    demo.child.kill('SIGINT')
    expect(await demo.exited).to.equal(0)
    // Everything it started is gone: the proxy and ZooKeeper ports refuse.
    expect(await refused(port)).to.equal(true)
    expect(await refused(zk)).to.equal(true)
  })
})
