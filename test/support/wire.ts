// Wire-level fixtures: raw client sockets, raw TCP upstreams that say exactly the bytes a test
// wants, and the proxy as a child process (so a crash is seen as an exit, not as mocha dying).

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitFor } from './helpers.js'

/** Writes `text` on a new connection and collects everything until the proxy closes it or `done` says so. */
export function raw(port: number, text: string | string[], done: (got: string) => boolean = () => false): Promise<{ got: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
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
  let stderr = ''
  let stdout = ''
  const state: { exited: ProxyProcess['exited'] } = { exited: null }
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
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
    await exit
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
