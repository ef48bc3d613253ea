// `npm run demo`: a local ZooKeeper, three sample upstreams that register themselves, and the
// proxy on 127.0.0.1:8080 (admin and status page on :9901). It prints the config file, the PIDs
// and how to stop and restart an upstream; Ctrl-C stops every process it started within 2 s and
// removes the folder it made.
// ZP_DEMO_LISTEN / ZP_DEMO_ADMIN / ZP_DEMO_ZK_PORT override the ports (the tests use free ones).

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
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
function start(script: string, args: string[], stdio: 'inherit' | 'pipe' = 'inherit'): ChildProcess {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', stdio, 'inherit'], env: { ...MALLOC_TUNING, ...process.env } })
  children.push(child)
  return child
}

const zk = await startZooKeeper({ clientPort: await zkPort(), tickTime: 2000 })
// Whatever way the demo ends, the folder it made (ZooKeeper's data, the config) goes with it.
process.once('exit', () => rmSync(zk.dir, { recursive: true, force: true }))
console.log(`ZooKeeper serving on ${zk.connectString} (data in ${zk.dir})`)
const upstreamScript = path.join(here, 'sample-upstream.js')
const upstreams = ['a', 'b', 'c'].map((name) => ({ name, child: start(upstreamScript, [name, zk.connectString, '/services/example']) }))

const config = path.join(zk.dir, 'demo.yaml')
writeFileSync(
  config,
  `# written by npm run demo
listen: ${listen}
admin: ${admin}
zookeeper:
  connect: ${zk.connectString}
  sessionTimeoutMs: 10000
# The demo stops within 2 s: in-flight requests get 1 s to finish.
shutdownTimeoutMs: 1000
services:
  - name: example
    path: /services/example
    strategy: round-robin
`,
)
const proxy = start(path.join(here, '..', 'lib', 'cli.js'), ['--config', config], 'pipe')
const shortest = (file: string) => (path.relative(process.cwd(), file).startsWith('..') ? file : path.relative(process.cwd(), file))
const restart = (name: string) => `node ${shortest(upstreamScript)} ${name} ${zk.connectString} /services/example`
/** What to do next, printed once the proxy listens, with the addresses it got (ports may be 0 in the config). */
function printHelp(at: { listen: string; admin: string }): void {
  console.log(`
zoo-proxy (PID ${proxy.pid}) on http://${at.listen}/   try: curl http://${at.listen}/hello
  its config:   ${config}
  reload it:    kill -HUP ${proxy.pid}   (after editing the config)
status page:    http://${at.admin}/   (JSON: http://${at.admin}/upstreams)
sample upstreams: ${upstreams.map((u) => `${u.name} (PID ${u.child.pid})`).join(', ')}
  stop one:     kill ${upstreams[1]!.child.pid}   (b deregisters; the proxy stops sending it requests)
  start it again, in another terminal: ${restart('b')}
Ctrl-C stops everything and removes ${zk.dir}.
`)
}
// The proxy's log goes to our stdout as it is; its "listening" line says where it listens.
let pending = ''
let helped = false
proxy.stdout!.on('data', (chunk: Buffer) => {
  process.stdout.write(chunk)
  if (helped) return
  pending += chunk.toString('utf8')
  const lines = pending.split('\n')
  pending = lines.pop() ?? ''
  for (const line of lines) {
    if (!line.includes('"zoo-proxy listening"')) continue
    try {
      const { listen: l, admin: a } = JSON.parse(line) as { listen?: string; admin?: string }
      helped = true
      printHelp({ listen: l ?? listen, admin: a ?? admin })
    } catch {
      // Not the JSON line it looked like: keep waiting for the real one.
    }
  }
})

let stopping = false
async function stop(code: number): Promise<void> {
  if (stopping) return
  stopping = true
  const exited = children.map((c) => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r))))
  for (const c of children) c.kill('SIGTERM')
  // Within 2 s in all: whatever has not finished after 1.2 s is killed.
  const timer = setTimeout(() => children.forEach((c) => c.kill('SIGKILL')), 1200)
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
