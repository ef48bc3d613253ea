// The other proxies measured in the same run, configured like zoo-proxy (round-robin over the same
// upstreams, keep-alive to them), and nginx as a cheap static upstream. Each runs in the
// foreground as a child of the benchmark, on loopback, in a temp dir of its own.

import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { track } from './common.js'

const here = path.dirname(fileURLToPath(import.meta.url))

export function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** Prefixes a command with `taskset -c <cpus>` when taskset is there. */
export function pinned(cpus: string | null, cmd: string, args: string[]): [string, string[]] {
  return cpus !== null && has('taskset') ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args]
}

async function waitPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${port}/`).then(
      (r) => (r.body?.cancel(), true),
      () => false,
    )
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing answers on ${port}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export interface Peer {
  readonly name: string
  readonly port: number
  /** It serves HTTPS (the https scenario). */
  readonly https?: boolean
  /** The processes whose CPU counts for it (nginx: the worker, not the master). */
  pids(): number[]
  readonly child: ChildProcess
}

export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

export const NGINX_COMMON = `daemon off;
master_process on;
worker_processes 1;
error_log stderr error;
pid nginx.pid;
events { worker_connections 4096; }`

/** nginx answering on each port: `/` a tiny body, `/big` a 1 MiB file, POSTs read and answered. */
export async function startNginxUpstreams(dir: string, ports: readonly number[], cpus: string | null): Promise<Peer> {
  mkdirSync(dir, { recursive: true, mode: 0o755 })
  writeFileSync(path.join(dir, 'big'), Buffer.alloc(1024 * 1024, 'x'), { mode: 0o644 })
  const conf = `${NGINX_COMMON}
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_buffer_size 128k;
  client_max_body_size 16m;
  server {
    ${ports.map((p) => `listen 127.0.0.1:${p} reuseport;`).join('\n    ')}
    location = /big { alias ${path.join(dir, 'big')}; default_type application/octet-stream; }
    location / { return 200 "ok"; }
  }
}
`
  writeFileSync(path.join(dir, 'nginx.conf'), conf)
  const [cmd, args] = pinned(cpus, 'nginx', ['-e', 'stderr', '-p', dir, '-c', path.join(dir, 'nginx.conf')])
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] }))
  await waitPort(ports[0]!)
  return { name: 'nginx-upstream', port: ports[0]!, child, pids: () => [child.pid!, ...childPids(child.pid!)] }
}

/** nginx, one worker, as a round-robin reverse proxy with upstream keep-alive. */
/** `tls`: serve HTTPS with this certificate and key (PEM files), TLS 1.2 and 1.3 as zoo-proxy. */
export async function startNginxProxy(dir: string, port: number, upstreams: readonly number[], cpus: string | null, tls?: { cert: string; key: string }): Promise<Peer> {
  mkdirSync(dir, { recursive: true })
  const ssl = tls === undefined ? '' : ` ssl;\n    ssl_certificate ${tls.cert};\n    ssl_certificate_key ${tls.key};\n    ssl_protocols TLSv1.2 TLSv1.3`
  const conf = `${NGINX_COMMON}
http {
  access_log off;
  keepalive_requests 1000000;
  client_max_body_size 16m;
  upstream backends {
    ${upstreams.map((p) => `server 127.0.0.1:${p};`).join('\n    ')}
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port}${ssl};
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_request_buffering off;
      proxy_buffering on;
    }
  }
}
`
  writeFileSync(path.join(dir, 'nginx.conf'), conf)
  const [cmd, args] = pinned(cpus, 'nginx', ['-e', 'stderr', '-p', dir, '-c', path.join(dir, 'nginx.conf')])
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] }))
  await waitPort(port)
  return { name: tls === undefined ? 'nginx' : 'nginx (https)', port, ...(tls === undefined ? {} : { https: true }), child, pids: () => childPids(child.pid!) }
}

/** HAProxy, one thread, round-robin with upstream keep-alive (http-reuse). */
export async function startHaproxy(dir: string, port: number, upstreams: readonly number[], cpus: string | null): Promise<Peer> {
  mkdirSync(dir, { recursive: true })
  const conf = `global
  nbthread 1
  maxconn 5000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  balance roundrobin
${upstreams.map((p, i) => `  server s${i} 127.0.0.1:${p}`).join('\n')}
`
  writeFileSync(path.join(dir, 'haproxy.cfg'), conf)
  const [cmd, args] = pinned(cpus, 'haproxy', ['-f', path.join(dir, 'haproxy.cfg'), '-db'])
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] }))
  await waitPort(port)
  return { name: 'haproxy', port, child, pids: () => [child.pid!] }
}

/** A Node script of bench/ as a target: `node <script> <port> '[upstream ports]'`, on `node` (this one by default). */
async function startNodeScript(name: string, script: string, port: number, upstreams: readonly number[], cpus: string | null, node = process.execPath): Promise<Peer> {
  const [cmd, args] = pinned(cpus, node, [path.join(here, script), String(port), JSON.stringify(upstreams)])
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] }))
  await waitPort(port)
  return { name, port, child, pids: () => [child.pid!] }
}

/** node-http-proxy with a keep-alive agent: the usual Node answer, as a baseline. */
export function startHttpProxy(port: number, upstreams: readonly number[], cpus: string | null): Promise<Peer> {
  return startNodeScript('http-proxy', 'http-proxy-baseline.js', port, upstreams, cpus)
}

/** bench/node-floor.ts: Node's socket I/O alone, the floor under a proxy on node:net (small GETs only). */
export function startNodeFloor(port: number, upstreams: readonly number[], cpus: string | null, node?: { bin: string; label: string }): Promise<Peer> {
  return startNodeScript(`node floor (no HTTP)${node === undefined ? '' : ` (${node.label})`}`, 'node-floor.js', port, upstreams, cpus, node?.bin)
}
