// Wire-level fixtures: raw client sockets, raw TCP upstreams that say exactly the bytes a test
// wants, and the proxy as a child process (so a crash is seen as an exit, not as mocha dying).

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitFor } from './helpers.js'

/** Writes `text` on a new connection and collects everything until the proxy closes it or `done` says so. */
export function raw(port: number, text: string | string[], done: (got: string) => boolean = () => false, onSocket: (s: net.Socket) => void = () => {}): Promise<{ got: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    onSocket(s)
    let got = ''
    let finished = false
    const finish = (closed: boolean) => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      s.destroy()
      resolve({ got, closed })
    }
    const timer = setTimeout(() => reject(new Error(`no end in 10 s; got: ${JSON.stringify(got)}`)), 10_000)
    s.on('data', (d) => {
      got += d.toString('latin1')
      if (done(got)) finish(false)
    })
    s.on('close', () => finish(true))
    s.on('error', () => {})
    const parts = Array.isArray(text) ? text : [text]
    s.on('connect', () => {
      for (const p of parts) s.write(p)
    })
  })
}

/** A TCP upstream answering each connection's requests with `answer(n)` (n counts from 0 per connection). */
export async function rawUpstream(answer: (socket: net.Socket, n: number, request: string) => void): Promise<{ port: number; connections: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>()
  let connections = 0
  const server = net.createServer((s) => {
    connections++
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    let buf = ''
    let n = 0
    s.on('data', (d) => {
      buf += d.toString('latin1')
      let end: number
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        const request = buf.slice(0, end)
        buf = buf.slice(end + 4)
        answer(s, n++, request)
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return connections
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  }
}

/** The send queue of `local` -> `remote` and the receive queue of its other end, from the kernel's table. */
function queues(local: number, remote: number): { tx: number; peerRx: number; peerState: number } | null {
  const port = (n: number) => `:${n.toString(16).toUpperCase().padStart(4, '0')}`
  let tx = -1
  let peerRx = -1
  let peerState = -1
  for (const line of readFileSync('/proc/net/tcp', 'latin1').split('\n')) {
    // sl local_address rem_address st tx_queue:rx_queue ...
    const f = line.trim().split(/\s+/)
    if (f.length < 5 || !f[4]!.includes(':')) continue
    const [txq, rxq] = f[4]!.split(':').map((h) => parseInt(h, 16)) as [number, number]
    if (f[1]!.endsWith(port(local)) && f[2]!.endsWith(port(remote))) tx = txq
    if (f[1]!.endsWith(port(remote)) && f[2]!.endsWith(port(local))) {
      peerRx = rxq
      peerState = parseInt(f[3]!, 16)
    }
  }
  return tx < 0 || peerRx < 0 ? null : { tx, peerRx, peerState }
}

/**
 * Sockets on this machine connected to `port` on loopback, in any state but TIME_WAIT: a
 * process's connections to a server still open on its side (0 once it has closed them all).
 */
export function openTo(port: number): number {
  const want = `:${port.toString(16).toUpperCase().padStart(4, '0')}`
  let n = 0
  for (const line of readFileSync('/proc/net/tcp', 'latin1').split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f.length > 4 && f[2]!.endsWith(want) && parseInt(f[3]!, 16) !== TIME_WAIT) n++
  }
  return n
}

const TIME_WAIT = 0x06

/** TCP_CLOSE_WAIT in /proc/net/tcp: the kernel has the other side's FIN. */
const CLOSE_WAIT = 0x08

/**
 * Resolves once the other end of `s` (a loopback peer, the proxy) has read every byte `s` wrote:
 * nothing left in Node's buffer, nothing unacknowledged, nothing in the peer's receive queue. Bytes
 * written after it are a read of their own: the peer's read() of the earlier ones has returned.
 * Linux, /proc/net/tcp.
 */
export async function consumed(s: net.Socket, what = 'the proxy to read what was written'): Promise<void> {
  const local = s.localPort
  const remote = s.remotePort
  if (local === undefined || remote === undefined) throw new Error('consumed: the socket is not connected')
  await waitFor(
    () => {
      // The peer closed: it reads nothing more, and what it read is all it will.
      if (s.destroyed || s.readableEnded) return true
      if (s.writableLength > 0) return false
      const q = queues(local, remote)
      return q !== null && q.tx === 0 && q.peerRx === 0
    },
    what,
    10_000,
    2,
  )
}

/**
 * Resolves once the kernel of the other end of `s` holds our FIN, with everything before it
 * (whether the peer has read them yet is its own business: a proxy busy with a request may not).
 */
export async function finReceived(s: net.Socket, what = 'the proxy to receive the FIN'): Promise<void> {
  const local = s.localPort
  const remote = s.remotePort
  if (local === undefined || remote === undefined) throw new Error('finReceived: the socket is not connected')
  await waitFor(
    () => {
      const q = queues(local, remote)
      return s.writableLength === 0 && q !== null && q.tx === 0 && q.peerState === CLOSE_WAIT
    },
    what,
    10_000,
    2,
  )
}

/** Proxies still running: killed when the test process exits, so a failed or aborted run leaves none behind. */
const live = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL')
})

/** How long a proxy gets to exit on SIGTERM before SIGKILL, ms (cleanup only, never judged). */
const STOP_GRACE_MS = 10_000

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))

export interface ProxyProcess {
  /** The config file it runs on (a test may rewrite it and send SIGHUP). */
  readonly configFile: string
  readonly port: number
  readonly adminPort: number
  readonly child: ChildProcess
  /** Set once the process exited: its code, or the signal that ended it (SIGSEGV: a native crash). */
  readonly exited: { code: number | null; signal: NodeJS.Signals | null } | null
  /** What it wrote to stderr (an unhandled error's stack, a native abort's message). */
  stderr(): string
  /** Its log so far (JSON lines on stdout). */
  stdout(): string
  /** SIGTERM, wait for the exit, remove its config. */
  stop(): Promise<void>
}

/**
 * The proxy's CLI on `config` (JSON), listening on ports the kernel picks (read back from its
 * "zoo-proxy listening" log line); resolves once its admin `/readyz` answers 200.
 */
export async function spawnProxy(config: Record<string, unknown>, nodeArgs: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<ProxyProcess> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-wire-'))
  const file = path.join(dir, 'proxy.json')
  writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', log: { level: 'info' }, ...config }))
  const child = spawn(process.execPath, [...nodeArgs, CLI, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env })
  live.add(child)
  let stderr = ''
  let stdout = ''
  const state: { exited: ProxyProcess['exited'] } = { exited: null }
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(child)
      state.exited = { code, signal }
      resolve()
    }),
  )
  child.stderr!.on('data', (d) => (stderr += d))
  const listening = new Promise<{ port: number; adminPort: number }>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      stdout += d
      const m = /"listen":"[^"]*:(\d+)","admin":"[^"]*:(\d+)"/.exec(stdout)
      if (m !== null) resolve({ port: Number(m[1]), adminPort: Number(m[2]) })
    })
    void exit.then(() => reject(new Error(`proxy exited before listening: ${JSON.stringify(state.exited)}\n${stderr}`)))
  })
  const stop = async () => {
    if (state.exited === null) child.kill('SIGTERM')
    // A proxy wedged by the failure under test must not hold the run open.
    const kill = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS).unref()
    await exit
    clearTimeout(kill)
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const { port, adminPort } = await listening
    await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200, 'proxy ready')
    return {
      configFile: file,
      port,
      adminPort,
      child,
      get exited() {
        return state.exited
      },
      stderr: () => stderr,
      stdout: () => stdout,
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}
