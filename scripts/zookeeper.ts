// Starts a real ZooKeeper on free loopback ports: standalone or an ensemble. Whose ZooKeeper:
// ZOOKEEPER_HOME's (an unpacked release), else the one whose zkServer.sh is on PATH, else
// Debian's package (see zookeeperClasspath).
// Used by the test suite, the demo and the benchmarks. Every server gets a fresh data dir, and is
// killed when this process exits, whatever way it exits.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const DEBIAN_CLASSPATH = ['/etc/zookeeper/conf', '/usr/share/java/zookeeper.jar', '/usr/share/java/slf4j-log4j12.jar', '/usr/share/java/log4j-1.2.jar'].join(':')

/** An unpacked ZooKeeper release's classpath: its conf/ and every jar in lib/ and beside them. */
function releaseClasspath(home: string): string {
  return [path.join(home, 'conf'), path.join(home, 'lib', '*'), path.join(home, '*')].join(path.delimiter)
}

/**
 * The Java classpath of the ZooKeeper to start: `ZOOKEEPER_HOME` when set (macOS, Fedora, a
 * release tarball: anything but Debian's package); else the release whose `bin/zkServer.sh` is on
 * PATH (Debian's package puts none there); else Debian's package. Throws, saying how to fix it,
 * when there is none.
 */
export function zookeeperClasspath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ZOOKEEPER_HOME) return releaseClasspath(env.ZOOKEEPER_HOME)
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    const script = path.join(dir, 'zkServer.sh')
    if (dir !== '' && existsSync(script)) return releaseClasspath(path.dirname(path.dirname(realpathSync(script))))
  }
  if (existsSync('/usr/share/java/zookeeper.jar')) return DEBIAN_CLASSPATH
  throw new Error('no ZooKeeper found: set ZOOKEEPER_HOME to an unpacked ZooKeeper release, put its bin/zkServer.sh on PATH, or install Debian\'s zookeeper package (bash scripts/ensure-zookeeper.sh --only)')
}

const live = new Set<ChildProcess>()
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL')
})

/**
 * The kernel's ephemeral range (`ip_local_port_range`): what `listen(0)` and outgoing connections
 * draw from. Ports handed out below it are not taken by anybody's port-0 listener a moment later.
 */
function ephemeralRange(): { low: number; high: number } {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    if (Number.isInteger(low) && Number.isInteger(high)) return { low: low!, high: high! }
  } catch {
    // Not Linux: assume IANA's range.
  }
  return { low: 49152, high: 65535 }
}

/** Binds `port` (0: any) and reads the port it got; rejects with the bind error (EADDRINUSE...). */
function bind(port: number, host: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen({ port, host, exclusive: true }, () => resolve(srv))
  })
}

/**
 * `n` distinct ports free right now, for servers that cannot listen on port 0 and say which port
 * they got (ZooKeeper, the demo). They are picked at random below the ephemeral range, so no
 * port-0 listener or outgoing connection takes one meanwhile; another process naming the same
 * port still can, so whoever binds them must retry on EADDRINUSE (startZooKeeper does). Anything
 * that can listen on port 0 should, and read the port back.
 */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const { low } = ephemeralRange()
  const floor = Math.max(1024, Math.min(10_000, low - 1000))
  const held: net.Server[] = []
  const ports: number[] = []
  try {
    for (let tries = 0; ports.length < n; tries++) {
      if (tries > 100 * n) throw new Error(`no ${n} free ports found in ${floor}..${low - 1}`)
      const port = floor + Math.floor(Math.random() * (low - floor))
      if (ports.includes(port)) continue
      const srv = await bind(port, host).catch(() => null)
      if (srv === null) continue
      held.push(srv)
      ports.push(port)
    }
  } finally {
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))))
  }
  return ports
}

/** One port of freePorts(); whoever binds it retries on EADDRINUSE. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return (await freePorts(1, host))[0]!
}

/** True when `port` on `host` cannot be bound right now. */
export async function portTaken(port: number, host = '127.0.0.1'): Promise<boolean> {
  const srv = await bind(port, host).catch((err: NodeJS.ErrnoException) => err)
  if (srv instanceof Error) return srv.code === 'EADDRINUSE'
  await new Promise((r) => srv.close(r))
  return false
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
  /** Its data dir: snapshots and transaction logs under version-2/. */
  readonly dataDir: string
  readonly #cfg: string
  readonly #log: string
  #proc: ChildProcess | null = null
  #exited: Promise<number | null> = Promise.resolve(null)

  constructor(id: number, clientPort: number, dataDir: string, cfg: string, log: string) {
    this.id = id
    this.clientPort = clientPort
    this.dataDir = dataDir
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
        zookeeperClasspath(),
        'org.apache.zookeeper.server.quorum.QuorumPeerMain',
        this.#cfg,
      ],
      { stdio: ['ignore', out, out] },
    )
    closeSync(out)
    live.add(proc)
    this.#exited = new Promise((resolve) =>
      proc.once('exit', (code) => {
        live.delete(proc)
        if (this.#proc === proc) this.#proc = null
        resolve(code)
      }),
    )
    this.#proc = proc
  }

  /** Resolves with the exit code once the process last started exits. */
  exited(): Promise<number | null> {
    return this.#exited
  }

  /** The last `lines` lines of its log. */
  logTail(lines = 30): string {
    try {
      return readFileSync(this.#log, 'utf8').split('\n').slice(-lines).join('\n')
    } catch {
      return ''
    }
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
    const exited = this.#exited
    proc.kill(signal)
    // A frozen (SIGSTOPped) server gets the signal only once it runs again.
    if (signal !== 'SIGKILL') proc.kill('SIGCONT')
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
      if (Date.now() > deadline) throw new Error(`zookeeper not serving after ${timeoutMs} ms`)
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

/** A server could not bind one of its ports (another process took it after freePorts() saw it free). */
class PortTakenError extends Error {
  readonly code = 'EADDRINUSE'
}

/**
 * Starts the servers and waits until they serve. A port of ours taken meanwhile by another process
 * (ZooKeeper cannot listen on port 0) is retried with fresh ports; a `clientPort` the caller chose
 * that is taken is an EADDRINUSE error at once.
 */
export async function startZooKeeper(opts: StartOptions = {}): Promise<ZkCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts)
    } catch (err) {
      // A port the caller chose stays taken: only ports we picked are worth picking again.
      if (!(err instanceof PortTakenError) || attempt >= 5 || (opts.clientPort !== undefined && (await portTaken(opts.clientPort)))) throw err
    }
  }
}

async function startOnce(opts: StartOptions): Promise<ZkCluster> {
  if (opts.clientPort !== undefined && (await portTaken(opts.clientPort))) throw new PortTakenError(`zookeeper client port ${opts.clientPort} is taken`)
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
    nodes.push(new ZkServerNode(id, ports[i]!.client, dataDir, cfg, path.join(dir, `zk${id}.log`)))
  }
  const cluster = new ZkCluster(nodes, dir)
  nodes.forEach((n) => n.start())
  let starting = true
  // A server that exits while starting has failed: say why at once rather than at the deadline.
  const died = nodes.map(async (n) => {
    const code = await n.exited()
    if (!starting) return
    const log = n.logTail()
    if (/BindException|Address already in use/.test(log)) throw new PortTakenError(`zookeeper server ${n.id} could not bind a port:\n${log}`)
    throw new Error(`zookeeper server ${n.id} exited with ${code} while starting:\n${log}`)
  })
  try {
    await Promise.race([cluster.waitServing(), ...died])
    // Serving, and by our processes (not by another server that holds a port ours could not bind).
    const gone = nodes.find((n) => !n.running)
    if (gone !== undefined) await died[nodes.indexOf(gone)]
  } catch (err) {
    starting = false
    const logs = nodes.map((n) => `--- server ${n.id}\n${n.logTail()}`).join('\n')
    await cluster.stop().catch(() => {})
    if (err instanceof PortTakenError) throw err
    throw new Error(`${(err as Error).message}\n${logs}`, { cause: err })
  } finally {
    starting = false
  }
  return cluster
}
