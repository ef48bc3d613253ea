// `npm run demo`: a local ZooKeeper, three sample upstreams that register themselves, and the
// proxy on 127.0.0.1:8080 (admin on :9901). Ctrl-C stops every process it started.
// ZP_DEMO_LISTEN / ZP_DEMO_ADMIN / ZP_DEMO_ZK_PORT override the ports (the tests use free ones).

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, startZooKeeper } from './zookeeper.js'
import { MALLOC_TUNING } from '../lib/ops/tuning.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const listen = process.env.ZP_DEMO_LISTEN ?? '127.0.0.1:8080'
const admin = process.env.ZP_DEMO_ADMIN ?? '127.0.0.1:9901'

async function zkPort(): Promise<number> {
  if (process.env.ZP_DEMO_ZK_PORT) return Number(process.env.ZP_DEMO_ZK_PORT)
  // 2181 when it is free, so `zkCli.sh -server 127.0.0.1:2181` just works; any free port otherwise.
  const probe = await import('node:net')
  return new Promise((resolve) => {
    const srv = probe.createServer()
    srv.once('error', () => freePort().then(resolve))
    srv.listen(2181, '127.0.0.1', () => srv.close(() => resolve(2181)))
  })
}

const children: ChildProcess[] = []
function start(script: string, args: string[]): ChildProcess {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...MALLOC_TUNING, ...process.env } })
  children.push(child)
  return child
}

const zk = await startZooKeeper({ clientPort: await zkPort(), tickTime: 2000 })
console.log(`ZooKeeper serving on ${zk.connectString} (data in ${zk.dir})`)
for (const name of ['a', 'b', 'c']) start(path.join(here, 'sample-upstream.js'), [name, zk.connectString, '/services/example'])

const config = path.join(zk.dir, 'demo.yaml')
writeFileSync(
  config,
  `# written by npm run demo
listen: ${listen}
admin: ${admin}
zookeeper:
  connect: ${zk.connectString}
  sessionTimeoutMs: 10000
services:
  - name: example
    path: /services/example
    strategy: round-robin
`,
)
const proxy = start(path.join(here, '..', 'lib', 'cli.js'), ['--config', config])
console.log(`zoo-proxy on http://${listen}/  (try: curl http://${listen}/hello)
admin on http://${admin}/upstreams
Ctrl-C stops everything.`)

let stopping = false
async function stop(code: number): Promise<void> {
  if (stopping) return
  stopping = true
  const exited = children.map((c) => (c.exitCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r))))
  for (const c of children) c.kill('SIGTERM')
  const timer = setTimeout(() => children.forEach((c) => c.kill('SIGKILL')), 5000)
  await Promise.all(exited)
  clearTimeout(timer)
  await zk.stop()
  process.exit(code)
}
process.on('SIGINT', () => void stop(0))
process.on('SIGTERM', () => void stop(0))
proxy.once('exit', (code) => {
  if (!stopping) {
    console.error(`zoo-proxy exited (${code}); stopping the demo`)
    void stop(1)
  }
})
