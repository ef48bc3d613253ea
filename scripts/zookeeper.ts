// Starts a real ZooKeeper (Debian's package) on free loopback ports: standalone or an ensemble.
// Used by the test suite, the demo and the benchmarks. Every server gets a fresh data dir, and is
// killed when this process exits, whatever way it exits.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const CLASSPATH = [
  '/etc/zookeeper/conf',
  '/usr/share/java/zookeeper.jar',
  '/usr/share/java/slf4j-log4j12.jar',
  '/usr/share/java/log4j-1.2.jar',
].join(':')

const live = new Set<ChildProcess>()
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL')
})

/** A port nobody listens on right now (bind to 0, read it, let it go). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

/** `n` distinct free ports: all bound at once, then let go, so none repeats. */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const srv = net.createServer()
          srv.unref()
          srv.once('error', reject)
          srv.listen(0, host, () => resolve(srv))
        }),
    ),
  )
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port)
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  return ports
}

/** Sends a four-letter word and returns the answer ('' when nobody answers). */
export function fourLetterWord(port: number, word: string, host = '127.0.0.1', timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect(port, host)
    let out = ''
    const done = () => {
      sock.destroy()
      resolve(out)
    }
    sock.setTimeout(timeoutMs, done)
    sock.on('connect', () => sock.write(word))
    sock.on('data', (d) => (out += d.toString()))
    sock.on('end', done)
    sock.on('error', done)
  })
}

export class ZkServerNode {
  readonly id: number
  readonly clientPort: number
  readonly #cfg: string
  readonly #log: string
  #proc: ChildProcess | null = null

  constructor(id: number, clientPort: number, cfg: string, log: string) {
    this.id = id
    this.clientPort = clientPort
    this.#cfg = cfg
    this.#log = log
  }

  get pid(): number | undefined {
    return this.#proc?.pid
  }

  get running(): boolean {
    return this.#proc !== null
  }

  start(): void {
    if (this.#proc !== null) return
    const out = openSync(this.#log, 'a')
    const proc = spawn(
      'java',
      [
        '-Xms16m',
        '-Xmx128m',
        '-XX:+UseSerialGC',
        '-Dzookeeper.root.logger=INFO,CONSOLE',
        '-Dzookeeper.admin.enableServer=false',
        '-cp',
        CLASSPATH,
        'org.apache.zookeeper.server.quorum.QuorumPeerMain',
        this.#cfg,
      ],
      { stdio: ['ignore', out, out] },
    )
    live.add(proc)
    proc.once('exit', () => {
      live.delete(proc)
      if (this.#proc === proc) this.#proc = null
    })
    this.#proc = proc
  }

  /** Answers `srvr` with a Mode line (standalone, leader or follower: it serves). */
  async serving(): Promise<string | null> {
    const answer = await fourLetterWord(this.clientPort, 'srvr')
    const m = /Mode: (\w+)/.exec(answer)
    return m ? m[1]! : null
  }

  /** Stops with `signal` (SIGTERM by default) and waits for the process to be gone. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = this.#proc
    if (proc === null) return
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    proc.kill(signal)
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }

  /** SIGSTOP: the server keeps its sockets open and answers nothing (a frozen server). */
  freeze(): void {
    this.#proc?.kill('SIGSTOP')
  }

  thaw(): void {
    this.#proc?.kill('SIGCONT')
  }
}

export class ZkCluster {
  readonly nodes: readonly ZkServerNode[]
  readonly dir: string

  constructor(nodes: ZkServerNode[], dir: string) {
    this.nodes = nodes
    this.dir = dir
  }

  get connectString(): string {
    return this.nodes.map((n) => `127.0.0.1:${n.clientPort}`).join(',')
  }

  /** Polls until `count` servers (default: all running ones) answer with a Mode. */
  async waitServing(timeoutMs = 30_000, count?: number): Promise<void> {
    const want = count ?? this.nodes.filter((n) => n.running).length
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const modes = await Promise.all(this.nodes.map((n) => (n.running ? n.serving() : Promise.resolve(null))))
      if (modes.filter((m) => m !== null).length >= want) return
      if (Date.now() > deadline) throw new Error(`zookeeper not serving after ${timeoutMs} ms (see ${this.dir})`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  /** The node that is leader now, if any (ensembles only). */
  async leader(): Promise<ZkServerNode | undefined> {
    for (const n of this.nodes) if ((await n.serving()) === 'leader') return n
    return undefined
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()))
    rmSync(this.dir, { recursive: true, force: true })
  }
}

export interface StartOptions {
  /** 1 for standalone (default), 3 or 5 for an ensemble. */
  readonly servers?: number
  /** Default 500 ms, so sessions of 1-10 s are possible and expiry tests take seconds. */
  readonly tickTime?: number
  /** Client port of the first server; default a free one. */
  readonly clientPort?: number
  /** Where data dirs and logs go; default a fresh temp dir. */
  readonly dir?: string
}

export async function startZooKeeper(opts: StartOptions = {}): Promise<ZkCluster> {
  const count = opts.servers ?? 1
  const tickTime = opts.tickTime ?? 500
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-zk-'))
  mkdirSync(dir, { recursive: true })
  const free = await freePorts(count * 3)
  const ports: { client: number; peer: number; election: number }[] = []
  for (let i = 0; i < count; i++) {
    ports.push({
      client: i === 0 && opts.clientPort !== undefined ? opts.clientPort : free[i * 3]!,
      peer: free[i * 3 + 1]!,
      election: free[i * 3 + 2]!,
    })
  }
  const nodes: ZkServerNode[] = []
  for (let i = 0; i < count; i++) {
    const id = i + 1
    const dataDir = path.join(dir, `zk${id}`)
    mkdirSync(dataDir, { recursive: true })
    const lines = [
      `tickTime=${tickTime}`,
      'initLimit=10',
      'syncLimit=5',
      `dataDir=${dataDir}`,
      `clientPort=${ports[i]!.client}`,
      'clientPortAddress=127.0.0.1',
      'admin.enableServer=false',
      '4lw.commands.whitelist=*',
      'maxClientCnxns=0',
      // Sessions as short as 2 ticks and as long as 20 are allowed by default; keep that.
    ]
    if (count > 1) {
      writeFileSync(path.join(dataDir, 'myid'), `${id}\n`)
      ports.forEach((p, j) => lines.push(`server.${j + 1}=127.0.0.1:${p.peer}:${p.election}`))
    }
    const cfg = path.join(dir, `zoo${id}.cfg`)
    writeFileSync(cfg, lines.join('\n') + '\n')
    nodes.push(new ZkServerNode(id, ports[i]!.client, cfg, path.join(dir, `zk${id}.log`)))
  }
  const cluster = new ZkCluster(nodes, dir)
  nodes.forEach((n) => n.start())
  try {
    await cluster.waitServing()
  } catch (err) {
    await cluster.stop().catch(() => {})
    throw err
  }
  return cluster
}
