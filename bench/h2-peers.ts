// The HTTP/2 and gRPC side of the benchmarks (issue 26 §5, issue 27): the peers configured for
// HTTP/2 toward clients as peers.ts configures them for HTTP/1.1 (one worker or thread, pinned,
// round-robin, keep-alive toward the same upstreams), the Node floor for HTTP/2, gRPC instances,
// and h2load, whose summary and per-request log this file reads.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import http2 from 'node:http2'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { track } from './common.js'
import type { LoadResult } from './common.js'
import { NGINX_COMMON, childPids, pinned } from './peers.js'
import type { Peer } from './peers.js'

const here = path.dirname(fileURLToPath(import.meta.url))

/** h2load's load in every HTTP/2 scenario (issue 26 §5): 100 connections, 10 streams in flight on each. */
export const H2_CLIENTS = 100
export const H2_STREAMS = 10

/** PEM files of the run's self-signed certificate. */
export interface CertFiles {
  readonly cert: string
  readonly key: string
}

/** Resolves once something accepts TCP connections on the port (an h2c-only port answers no HTTP/1.1 probe). */
export async function waitTcp(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)))
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/**
 * Whether the server on `port` answers a GET over HTTP/2 (h2c with prior knowledge, or TLS with
 * ALPN h2): null when it does, else why not. A server without HTTP/2 answers the connection
 * preface with an HTTP/1.1 error and a close, or its TLS offers no h2; either ends the session.
 */
export function h2Refusal(port: number, tls: boolean, timeoutMs = 5000): Promise<string | null> {
  return new Promise((resolve) => {
    let settled = false
    const done = (why: string | null) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      session.destroy()
      resolve(why)
    }
    const timer = setTimeout(() => done(`no HTTP/2 answer within ${timeoutMs} ms`), timeoutMs)
    const session = http2.connect(`${tls ? 'https' : 'http'}://127.0.0.1:${port}`, { rejectUnauthorized: false })
    session.on('error', (err) => done(`HTTP/2 refused (${(err as NodeJS.ErrnoException).code ?? err.message})`))
    session.on('close', () => done('HTTP/2 refused (the connection was closed)'))
    const req = session.request({ ':path': '/' })
    req.on('error', (err) => done(`HTTP/2 refused (${(err as NodeJS.ErrnoException).code ?? err.message})`))
    req.on('response', () => done(null))
    req.end()
  })
}

/** `quiet`: its error log goes nowhere (the chaos run's, one line per refused connect). */
function startNginx(dir: string, conf: string, cpus: string | null, quiet = false): ChildProcess {
  mkdirSync(dir, { recursive: true })
  writeFileSync(path.join(dir, 'nginx.conf'), conf)
  const [cmd, args] = pinned(cpus, 'nginx', ['-e', 'stderr', '-p', dir, '-c', path.join(dir, 'nginx.conf')])
  return track(spawn(cmd, args, { stdio: ['ignore', 'ignore', quiet ? 'ignore' : 'inherit'] }))
}

/**
 * `listen ... http2` turns HTTP/2 on in the nginx 1.22 Debian ships (h2c with prior knowledge on a
 * plain port, ALPN h2 with ssl); from 1.25.1 `http2 on` is its spelling, and this one still works.
 */
function nginxListen(port: number, tls?: CertFiles): string {
  return tls === undefined
    ? `listen 127.0.0.1:${port} http2;`
    : `listen 127.0.0.1:${port} ssl http2;\n    ssl_certificate ${tls.cert};\n    ssl_certificate_key ${tls.key};\n    ssl_protocols TLSv1.2 TLSv1.3;`
}

/**
 * nginx, one worker, HTTP/2 toward clients, round-robin with keep-alive toward HTTP/1.1 upstreams
 * (as startNginxProxy), or with `grpc` toward gRPC instances by grpc_pass.
 */
/**
 * `retryLog` (the gRPC chaos baseline): grpc_pass retries what nginx can (a connect error or a
 * timeout, on any method: a gRPC call is a POST), takes a failed server out for a second, and logs
 * each call's `$upstream_addr` (every server tried, comma-separated) to this file.
 */
export async function startNginxH2Proxy(dir: string, port: number, upstreams: readonly number[], cpus: string | null, opts: { tls?: CertFiles; grpc?: boolean; retryLog?: string } = {}): Promise<Peer> {
  const retry = opts.retryLog !== undefined
  const pass = opts.grpc === true
    ? `grpc_pass grpc://backends;${retry ? '\n      grpc_next_upstream error timeout non_idempotent;\n      grpc_next_upstream_tries 3;' : ''}`
    : `proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_request_buffering off;
      proxy_buffering on;`
  const conf = `${NGINX_COMMON}
http {
  ${retry ? `log_format tried '$upstream_addr';\n  access_log ${opts.retryLog} tried;` : 'access_log off;'}
  keepalive_requests 1000000;
  client_max_body_size 16m;
  upstream backends {
    ${upstreams.map((p) => `server 127.0.0.1:${p}${retry ? ' max_fails=1 fail_timeout=1s' : ''};`).join('\n    ')}
    # 100 connections x 10 streams are up to 1,000 requests at once: idle upstream connections
    # past this cache are closed, so it holds them all (the HTTP/1.1 scenarios' 128 would churn).
    keepalive 1024;
    keepalive_requests 1000000;
  }
  server {
    ${nginxListen(port, opts.tls)}
    location / {
      ${pass}
    }
  }
}
`
  const child = startNginx(dir, conf, cpus, retry)
  await waitTcp(port)
  const name = `nginx${opts.grpc === true ? ' (grpc_pass)' : ''}${opts.tls === undefined ? '' : ' (h2 over TLS)'}`
  return { name, port, ...(opts.tls === undefined ? {} : { https: true }), child, pids: () => childPids(child.pid!) }
}

/** nginx answering h2c with prior knowledge on each port (`return 200 "ok"`): instances for the h2c-upstream variant. */
export async function startNginxH2cUpstreams(dir: string, ports: readonly number[], cpus: string | null): Promise<Peer> {
  const conf = `${NGINX_COMMON}
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    ${ports.map((p) => `listen 127.0.0.1:${p} http2 reuseport;`).join('\n    ')}
    location / { return 200 "ok"; }
  }
}
`
  const child = startNginx(dir, conf, cpus)
  await waitTcp(ports[0]!)
  return { name: 'nginx-h2c-upstream', port: ports[0]!, child, pids: () => [child.pid!, ...childPids(child.pid!)] }
}

/**
 * HAProxy, one thread, HTTP/2 toward clients (`proto h2` for h2c, ALPN h2 over TLS), round-robin
 * with `http-reuse always`; `h2Servers` speaks h2c to the servers too (the h2c-upstream variant, gRPC).
 */
export async function startHaproxyH2(dir: string, port: number, upstreams: readonly number[], cpus: string | null, opts: { tls?: CertFiles; h2Servers?: boolean; name?: string } = {}): Promise<Peer> {
  mkdirSync(dir, { recursive: true })
  let bind = `bind 127.0.0.1:${port} proto h2`
  if (opts.tls !== undefined) {
    // HAProxy takes the certificate and its key in one PEM file.
    const pem = path.join(dir, 'cert+key.pem')
    writeFileSync(pem, readFileSync(opts.tls.cert, 'utf8') + readFileSync(opts.tls.key, 'utf8'), { mode: 0o600 })
    bind = `bind 127.0.0.1:${port} ssl crt ${pem} alpn h2,http/1.1`
  }
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
  ${bind}
  default_backend be
backend be
  balance roundrobin
${upstreams.map((p, i) => `  server s${i} 127.0.0.1:${p}${opts.h2Servers === true ? ' proto h2' : ''}`).join('\n')}
`
  writeFileSync(path.join(dir, 'haproxy.cfg'), conf)
  const [cmd, args] = pinned(cpus, 'haproxy', ['-f', path.join(dir, 'haproxy.cfg'), '-db'])
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] }))
  await waitTcp(port)
  const name = opts.name ?? `haproxy${opts.tls === undefined ? '' : ' (h2 over TLS)'}`
  return { name, port, ...(opts.tls === undefined ? {} : { https: true }), child, pids: () => [child.pid!] }
}

/** bench/h2-floor.ts: a bare node:http2 server answering each stream itself, the floor under zoo-proxy's HTTP/2 front. */
export async function startH2Floor(port: number, cpus: string | null, tls?: CertFiles): Promise<Peer> {
  const [cmd, args] = pinned(cpus, process.execPath, [path.join(here, 'h2-floor.js'), String(port), ...(tls === undefined ? [] : [tls.cert, tls.key])])
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] }))
  await waitTcp(port)
  return { name: `node floor (node:http2${tls === undefined ? '' : ', TLS'}, no upstream)`, port, ...(tls === undefined ? {} : { https: true }), child, pids: () => [child.pid!] }
}

/** bench/grpc-instances.ts in a child process: grpc-js servers on the given ports (0: any free one). */
export async function spawnGrpcInstances(specs: readonly { port?: number; unavailable?: boolean }[], cpus: string | null): Promise<{ ports: number[]; child: ChildProcess }> {
  const [cmd, args] = pinned(cpus, process.execPath, [path.join(here, 'grpc-instances.js'), JSON.stringify(specs)])
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] }))
  const ports = await new Promise<number[]>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d) => {
      out += d
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as number[])
    })
    child.once('exit', (code) => reject(new Error(`gRPC instances exited ${code}`)))
  })
  return { ports, child }
}

/** What h2load's summary says. */
export interface H2LoadSummary {
  readonly seconds: number
  readonly rps: number
  readonly done: number
  readonly succeeded: number
  readonly failed: number
  readonly errored: number
  readonly timeout: number
  readonly status: { readonly '2xx': number; readonly '3xx': number; readonly '4xx': number; readonly '5xx': number }
}

/** Reads h2load's (nghttp2 1.4x-1.6x) summary lines; throws with the output when they are not there. */
export function parseH2loadSummary(out: string): H2LoadSummary {
  const fin = /finished in ([\d.]+)(s|ms|us), ([\d.]+) req\/s/.exec(out)
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out)
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out)
  if (fin === null || req === null || codes === null) throw new Error(`h2load said: ${out.slice(0, 2000)}`)
  const scale = fin[2] === 's' ? 1 : fin[2] === 'ms' ? 1e-3 : 1e-6
  const n = (s: string | undefined) => Number(s)
  return {
    seconds: n(fin[1]) * scale,
    rps: n(fin[3]),
    done: n(req[3]),
    succeeded: n(req[4]),
    failed: n(req[5]),
    errored: n(req[6]),
    timeout: n(req[7]),
    status: { '2xx': n(codes[1]), '3xx': n(codes[2]), '4xx': n(codes[3]), '5xx': n(codes[4]) },
  }
}

/**
 * p50, p99 and p99.9 in ms from h2load's --log-file (one line a request: start µs, status, µs to the
 * end of the answer), by the nearest-rank method. Lines that are not three numbers are skipped.
 */
export function logPercentiles(log: string): { p50: number; p99: number; p999: number } {
  const us: number[] = []
  for (const line of log.split('\n')) {
    const f = line.split('\t')
    if (f.length !== 3) continue
    const v = Number(f[2])
    if (Number.isFinite(v) && v >= 0) us.push(v)
  }
  if (us.length === 0) return { p50: 0, p99: 0, p999: 0 }
  us.sort((a, b) => a - b)
  const at = (p: number) => us[Math.min(us.length - 1, Math.max(0, Math.ceil(p * us.length) - 1))]! / 1000
  return { p50: at(0.5), p99: at(0.99), p999: at(0.999) }
}

export interface H2LoadRun {
  readonly url: string
  /**
   * How many requests (`-n`). Not a duration (`-D`): h2load 1.52's timed mode waits forever at its
   * end for node:http2 TLS servers to close their connections, so a run is sized by a rate measured
   * in the warm-up instead.
   */
  readonly requests: number
  /** Where h2load runs (taskset), as the other load tools. */
  readonly cpus: string | null
  /** POST this file's bytes (a gRPC call's framed message). */
  readonly dataFile?: string
  readonly headers?: readonly string[]
  /** Per-request log, for the percentiles; removed after reading. */
  readonly logFile: string
}

/** A run that has not ended by then is stuck (a server that never answers some stream): it is killed. */
const H2LOAD_DEADLINE_MS = 300_000

/** One h2load run (`-t1 -c100 -m10 -n requests`): h2c with prior knowledge for http://, ALPN h2 for https://. */
export function runH2load(r: H2LoadRun): Promise<LoadResult> {
  const args = ['-t1', `-c${H2_CLIENTS}`, `-m${H2_STREAMS}`, '-n', String(r.requests), '--log-file', r.logFile]
  for (const h of r.headers ?? []) args.push('-H', h)
  if (r.dataFile !== undefined) args.push('-d', r.dataFile)
  args.push(r.url)
  const [cmd, cmdArgs] = pinned(r.cpus, 'h2load', args)
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, cmdArgs, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    child.once('error', reject)
    const watchdog = setTimeout(() => child.kill('SIGKILL'), H2LOAD_DEADLINE_MS)
    child.once('exit', (_code, signal) => {
      clearTimeout(watchdog)
      if (signal === 'SIGKILL') return reject(new Error(`h2load ${r.url} had not ended after ${H2LOAD_DEADLINE_MS / 1000} s`))
      try {
        const s = parseH2loadSummary(out)
        const p = logPercentiles(readFileSync(r.logFile, 'utf8'))
        writeFileSync(r.logFile, '')
        const non2xx = s.status['3xx'] + s.status['4xx'] + s.status['5xx']
        // A request done without any status (reset, timed out, connection lost) is an error.
        resolve({ rps: s.rps, ...p, errors: Math.max(0, s.done - s.status['2xx'] - non2xx), non2xx, requests: s.done })
      } catch (err) {
        reject(err as Error)
      }
    })
  })
}
