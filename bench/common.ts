// Shared pieces of the benchmarks: upstreams and the proxy in processes of their own (so the load
// generator does not share their event loop), autocannon runs, CPU and RSS of a process.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { freePort } from '../scripts/zookeeper.js'

const here = path.dirname(fileURLToPath(import.meta.url))
export const CLI = path.join(here, '..', 'lib', 'cli.js')

const children = new Set<ChildProcess>()
// SIGTERM, not SIGKILL: nginx's master then takes its workers down with it.
process.once('exit', () => children.forEach((c) => c.kill('SIGTERM')))

export function track(child: ChildProcess): ChildProcess {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  const t = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(t)
}

export interface UpstreamSpec {
  readonly name: string
  /** Answer delay, ms. */
  readonly delayMs?: number
  /** Response body size, bytes. */
  readonly bytes?: number
  /** Listen on this port (default: any free one). */
  readonly port?: number
}

/** Starts upstream servers in one child process; resolves with their ports. */
export async function spawnUpstreams(specs: readonly UpstreamSpec[]): Promise<{ ports: number[]; child: ChildProcess }> {
  const child = track(spawn(process.execPath, [path.join(here, 'upstream-server.js'), JSON.stringify(specs)], { stdio: ['ignore', 'pipe', 'inherit'] }))
  const ports = await new Promise<number[]>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d) => {
      out += d
      const line = out.split('\n')[0]
      if (out.includes('\n')) resolve(JSON.parse(line!) as number[])
    })
    child.once('exit', (code) => reject(new Error(`upstreams exited ${code}`)))
  })
  return { ports, child }
}

export interface RunningProxy {
  readonly port: number
  readonly adminPort: number
  readonly child: ChildProcess
  stop(): Promise<void>
}

/** Runs `zoo-proxy --config` in a child process and waits for /readyz. */
export async function spawnProxy(dir: string, zkConnect: string, service: object, extra: object = {}): Promise<RunningProxy> {
  const port = await freePort()
  const adminPort = await freePort()
  const file = path.join(dir, `proxy-${port}.json`)
  writeFileSync(
    file,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      admin: `127.0.0.1:${adminPort}`,
      zookeeper: { connect: zkConnect },
      log: { level: 'warn' },
      services: [{ name: 'bench', path: '/bench/service', ...service }],
      ...extra,
    }),
  )
  const child = track(spawn(process.execPath, [CLI, '--config', file], { stdio: ['ignore', 'ignore', 'inherit'] }))
  const deadline = Date.now() + 20_000
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status === 200, () => false)
    if (ok) {
      const body = (await (await fetch(`http://127.0.0.1:${adminPort}/upstreams`)).json()) as { services: { bench: { instances: unknown[] } } }
      if (body.services.bench.instances.length > 0) break
    }
    if (Date.now() > deadline) throw new Error('proxy not ready')
    await new Promise((r) => setTimeout(r, 100))
  }
  return { port, adminPort, child, stop: () => stopChild(child) }
}

/** Requests per instance so far, from the proxy's /upstreams, keyed by port. */
export async function requestsByPort(adminPort: number): Promise<Record<number, number>> {
  const body = (await (await fetch(`http://127.0.0.1:${adminPort}/upstreams`)).json()) as {
    services: Record<string, { instances: { port: number; requests: number }[] }>
  }
  const out: Record<number, number> = {}
  for (const s of Object.values(body.services)) for (const i of s.instances) out[i.port] = i.requests
  return out
}

export interface LoadResult {
  readonly rps: number
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly errors: number
  readonly non2xx: number
  readonly requests: number
}

export async function cannon(url: string, opts: { connections?: number; durationS?: number; method?: string; body?: Buffer; setupHeaders?: () => Record<string, string> } = {}): Promise<LoadResult> {
  const r = await autocannon({
    url,
    connections: opts.connections ?? 50,
    duration: opts.durationS ?? 5,
    method: (opts.method ?? 'GET') as 'GET',
    body: opts.body,
    requests: opts.setupHeaders ? [{ setupRequest: (req: object) => ({ ...req, headers: { ...opts.setupHeaders!() } }) }] : undefined,
  })
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    p999: r.latency.p99_9 ?? r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
    requests: r.requests.total,
  }
}

/** CPU seconds a process has used in user space and in the kernel, from /proc. */
export function cpuTimes(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(fields[11]) / 100, sys: Number(fields[12]) / 100 } // utime, stime in clock ticks (USER_HZ = 100)
}

/** A fixed-width table for the terminal and the README. */
export function table(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? (Number.isInteger(c) ? String(c) : c.toFixed(2)) : c)))
  const lines = [`| ${headers.join(' | ')} |`, `| ${headers.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`]
  for (const r of cells) lines.push(`| ${r.join(' | ')} |`)
  return lines.join('\n')
}
