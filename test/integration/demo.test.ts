import { expect } from 'chai'
import { existsSync, mkdirSync, symlinkSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '../../scripts/zookeeper.js'
import { listeningPorts, send, spawnNode, tempDir, useClosers, waitFor, waitThroughErrors } from '../support/helpers.js'
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
  async function startDemo(env: NodeJS.ProcessEnv = {}): Promise<{ demo: Child; port: number; zk: number }> {
    for (let attempt = 1; ; attempt++) {
      const zk = await freePort()
      const demo = spawnNode(closers, [DEMO], { env: { ...process.env, ...env, ZP_DEMO_LISTEN: '127.0.0.1:0', ZP_DEMO_ADMIN: '127.0.0.1:0', ZP_DEMO_ZK_PORT: String(zk) }, group: true })
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

  /** What the demo printed for its user: config file, proxy PID, status page, upstream commands. */
  async function printed(demo: Child) {
    const out = await waitFor(() => (/Ctrl-C stops everything/.test(demo.stdout()) ? demo.stdout() : null), 'the demo to print its help')
    const grab = (re: RegExp) => {
      const m = re.exec(out)
      expect(m, `${re} in:\n${out}`).to.not.equal(null)
      return m!
    }
    return {
      config: grab(/its config: +(\S+)/)[1]!,
      pid: Number(grab(/zoo-proxy \(PID (\d+)\)/)[1]),
      statusPage: grab(/status page: +(http:\/\/\S+\/)/)[1]!,
      stopPid: Number(grab(/stop one: +kill (\d+)/)[1]),
      restart: grab(/start it again[^:]*: node (.+)$/m)[1]!.split(' '),
    }
  }

  it('prints its config file, the proxy\'s PID and the status page, and removes everything it made on SIGINT', async () => {
    const { demo } = await startDemo()
    const p = await printed(demo)
    expect(existsSync(p.config)).to.equal(true)
    // The PID is the proxy's: a SIGHUP to it reloads the config it printed.
    process.kill(p.pid, 'SIGHUP')
    await waitFor(() => demo.stdout().includes('"config reloaded"'), 'the proxy to log the reload')
    const page = await fetch(p.statusPage)
    expect(page.status).to.equal(200)
    expect(page.headers.get('content-type')).to.match(/^text\/html/)
    demo.child.kill('SIGINT')
    expect(await demo.exited).to.equal(0)
    expect(existsSync(path.dirname(p.config)), 'the demo\'s folder').to.equal(false)
    expect(() => process.kill(p.pid, 0)).to.throw()
  })

  it('stops an upstream and starts it again with the commands it prints', async () => {
    const { demo, port } = await startDemo()
    const p = await printed(demo)
    const instances = async () => ((await (await fetch(`${p.statusPage}upstreams`)).json()) as { services: { example: { instances: unknown[] } } }).services.example.instances.length
    await waitThroughErrors(async () => (await instances()) === 3, 'three instances')
    process.kill(p.stopPid, 'SIGTERM')
    await waitThroughErrors(async () => (await instances()) === 2, 'the stopped upstream gone')
    const [script, ...args] = p.restart
    spawnNode(closers, [path.resolve(script!), ...args])
    await waitThroughErrors(async () => (await instances()) === 3, 'the upstream back')
    const seen = new Set<string>()
    await waitThroughErrors(async () => {
      const r = await send(port, '/hello')
      if (r.status === 200) seen.add(JSON.parse(r.body).instance)
      return seen.size === 3
    }, 'answers from all three again', 30_000, 50)
    demo.child.kill('SIGINT')
    expect(await demo.exited).to.equal(0)
  })

  it('uses the ZooKeeper ZOOKEEPER_HOME names, and says so when there is none there', async () => {
    // A release's layout (conf/, lib/*.jar) made of this machine's ZooKeeper jars.
    const home = tempDir(closers, 'zoo-proxy-zk-home-')
    mkdirSync(path.join(home, 'lib'))
    mkdirSync(path.join(home, 'conf'))
    for (const jar of ['zookeeper.jar', 'slf4j-log4j12.jar', 'log4j-1.2.jar']) symlinkSync(path.join('/usr/share/java', jar), path.join(home, 'lib', jar))
    symlinkSync('/etc/zookeeper/conf/log4j.properties', path.join(home, 'conf', 'log4j.properties'))
    const { demo, port } = await startDemo({ ZOOKEEPER_HOME: home })
    await waitThroughErrors(async () => (await send(port, '/hello')).status === 200, 'an answer', 30_000, 50)
    demo.child.kill('SIGINT')
    expect(await demo.exited).to.equal(0)
    const empty = tempDir(closers, 'zoo-proxy-zk-home-')
    const failed = spawnNode(closers, [DEMO], { env: { ...process.env, ZOOKEEPER_HOME: empty, ZP_DEMO_LISTEN: '127.0.0.1:0', ZP_DEMO_ADMIN: '127.0.0.1:0', ZP_DEMO_ZK_PORT: String(await freePort()) }, group: true })
    expect(await failed.exited).to.not.equal(0)
    expect(failed.stderr()).to.match(/zookeeper/i)
  })
})
