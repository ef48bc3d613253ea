// The proxy under test, in a child process: a crash in native code shows as the child exiting
// with a signal instead of taking the harness down with it.

import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import type { Buffer } from 'node:buffer'
import process from 'node:process'
import { fileURLToPath } from 'node:url'
import { createLogger, createProxy, validateConfig } from '../../lib/index.js'
import { ANSWER_DEADLINE_MS } from './options.js'

/** The file the child runs: the entry (index.ts), which turns into the proxy on --proxy-child. */
const ENTRY = fileURLToPath(new URL('./index.js', import.meta.url))

// The proxy under test, in a child process.

/**
 * `connections`: the pool's bound per instance. It is sized by the harness to the clients it runs,
 * so no request waits for a free connection: such a wait ends in a 504 or a client's timeout
 * that depends on how busy the machine is, not on what the proxy does with the bytes.
 */
export async function proxyChild(connections: number, ports: readonly number[]): Promise<void> {
  const config = await validateConfig(
    {
      listen: '127.0.0.1:0',
      zookeeper: { connect: '127.0.0.1:1' },
      log: { level: 'silent' },
      shutdownTimeoutMs: 1_000,
      services: [
        {
          name: 's',
          path: '/s',
          timeoutMs: ANSWER_DEADLINE_MS,
          maxConnectionsPerInstance: Math.min(65_536, Math.max(2, Math.trunc(connections) || 2)),
          retry: { bufferBytes: 4096 },
          // Short ejections: the failing kinds eject instances now and then, and both must be
          // back soon for the retries of the next ones to have somewhere to go.
          outlier: { baseEjectionMs: 200, maxEjectionMs: 1_000 },
        },
      ],
    },
    process.cwd(),
  )
  const proxy = await createProxy(config, { role: 'worker', logger: createLogger('silent') })
  proxy.applySnapshot(
    's',
    ports.map((port, i) => ({ key: `/s/${i}`, host: '127.0.0.1', port, weight: 1, state: 'up' as const, meta: {} })),
  )
  await proxy.start()
  process.on('message', (m: unknown) => {
    if (m === 'stats') {
      const sockets = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length
      process.send?.({ type: 'stats', rss: process.memoryUsage().rss, sockets })
    } else if (m === 'stop') void proxy.close().finally(() => process.exit(0))
  })
  // The harness is gone (killed, crashed): nobody will stop this process otherwise.
  process.on('disconnect', () => process.exit(0))
  // The pool's idle timeout as the config gave it, default included: the harness waits it out.
  process.send?.({ type: 'listening', port: proxy.address().port, upstreamIdleMs: config.services[0]?.keepAliveTimeoutMs ?? 0 })
}

interface ProxyChild {
  readonly port: number
  /** How long the proxy keeps an idle upstream connection (the service's keepAliveTimeoutMs). */
  readonly upstreamIdleMs: number
  /** Set when the process exited. */
  exit: { code: number | null; signal: string | null } | null
  onExit: (() => void) | null
  /** The last 16 KiB it wrote to stdout and stderr. */
  output(): string
  stats(): Promise<{ rss: number; sockets: number } | null>
  stop(): Promise<void>
}

export async function startProxyChild(connections: number, ports: readonly number[]): Promise<ProxyChild> {
  const proc: ChildProcess = fork(ENTRY, ['--proxy-child', String(connections), ...ports.map(String)], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    execArgv: ['--enable-source-maps'],
  })
  let tail = ''
  const keep = (d: Buffer) => {
    tail = (tail + d.toString('utf8')).slice(-16 * 1024)
  }
  proc.stdout?.on('data', keep)
  proc.stderr?.on('data', keep)
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const { port, upstreamIdleMs } = await new Promise<{ port: number; upstreamIdleMs: number }>((resolve, reject) => {
    proc.on('message', (m: { type?: string; port?: number; upstreamIdleMs?: number }) => {
      if (m.type === 'listening' && m.port !== undefined) resolve({ port: m.port, upstreamIdleMs: m.upstreamIdleMs ?? 0 })
    })
    proc.once('exit', (code, signal) => reject(new Error(`the proxy child exited while starting (code ${code}, signal ${signal}):\n${tail}`)))
  })
  const child: ProxyChild = {
    port,
    upstreamIdleMs,
    exit: null,
    onExit: null,
    output: () => tail,
    stats: () =>
      new Promise((resolve) => {
        if (child.exit !== null) return resolve(null)
        const timer = setTimeout(() => resolve(null), 2_000)
        const on = (m: { type?: string; rss?: number; sockets?: number }) => {
          if (m.type !== 'stats') return
          proc.off('message', on)
          clearTimeout(timer)
          resolve({ rss: m.rss ?? 0, sockets: m.sockets ?? 0 })
        }
        proc.on('message', on)
        proc.send('stats')
      }),
    stop: async () => {
      if (child.exit !== null) return
      child.onExit = null
      proc.send('stop')
      const killer = setTimeout(() => proc.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(killer)
    },
  }
  proc.once('exit', (code, signal) => {
    child.exit = { code, signal }
    child.onExit?.()
  })
  return child
}
