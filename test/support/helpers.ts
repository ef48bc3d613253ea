// Shared test fixtures: real HTTP upstreams on port 0, a real ZooKeeper, polling with a deadline.

import { expect } from 'chai'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import zookeeper from 'node-zookeeper-client'
import { validateConfig } from '../../lib/config.js'
import type { Config } from '../../lib/config.js'
import { ZkSession, isNodeExists } from '../../lib/discovery/zk-session.js'
import { silentLogger } from '../../lib/log.js'
import type { Logger } from '../../lib/log.js'
import { createProxy } from '../../lib/proxy.js'
import type { ProxyDeps, ZooProxy } from '../../lib/proxy.js'
import { startZooKeeper } from '../../scripts/zookeeper.js'
import type { ZkCluster } from '../../scripts/zookeeper.js'

/**
 * Polls `check` until it returns a truthy value or the deadline passes. A check that throws fails
 * the wait at once: an `expect` inside it is a verdict, not a "not yet". For checks that may throw
 * while the thing they look at is still coming up, say so with waitThroughErrors().
 */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000, everyMs = 20): Promise<NonNullable<T>> {
  return poll(check, what, timeoutMs, everyMs, () => false)
}

/**
 * waitFor() for checks that may throw while the thing they look at is not there yet (a connection
 * refused before a process listens, a ZooKeeper call during an election): such errors mean "not
 * yet" and the last one is reported at the deadline. An assertion still fails the wait at once.
 */
export async function waitThroughErrors<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000, everyMs = 20): Promise<NonNullable<T>> {
  return poll(check, what, timeoutMs, everyMs, (err) => (err as Error | null)?.name !== 'AssertionError')
}

async function poll<T>(check: () => T | Promise<T>, what: string, timeoutMs: number, everyMs: number, transient: (err: unknown) => boolean): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v) return v as NonNullable<T>
    } catch (err) {
      if (!transient(err)) throw err
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`, { cause: last })
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void

export interface Upstream {
  readonly name: string
  readonly port: number
  readonly hits: number
  /** Requests seen, in order: method, url, headers. */
  readonly seen: { method: string; url: string; headers: http.IncomingHttpHeaders }[]
  handler: Handler
  close(): Promise<void>
}

/** Answers `200 <name>` unless given another handler. */
export async function startUpstream(name: string, handler?: Handler): Promise<Upstream> {
  const seen: Upstream['seen'] = []
  const up = {
    name,
    port: 0,
    seen,
    get hits() {
      return seen.length
    },
    handler:
      handler ??
      ((_req: http.IncomingMessage, res: http.ServerResponse) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name })
        res.end(name)
      }),
    close: async () => {},
  }
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    up.handler(req, res)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  up.port = (server.address() as AddressInfo).port
  up.close = () =>
    new Promise<void>((r) => {
      server.close(() => r())
      server.closeAllConnections()
    })
  return up
}

export interface Reply {
  status: number
  /** The body as UTF-8 text. */
  body: string
  /** The body's bytes. */
  bytes: Buffer
  headers: Record<string, string | string[] | undefined>
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })

/** One request to the proxy (node:http, so any header can be sent); never throws for an HTTP status. */
export function send(port: number, path = '/', opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers, agent }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const bytes = Buffer.concat(chunks)
        resolve({ status: res.statusCode ?? 0, body: bytes.toString(), bytes, headers: res.headers })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

export type Closers = (() => unknown)[]

/**
 * Things to close after each test, closed last-in first-out (mocha afterEach), every one of them
 * even when one fails; the first failure is reported after.
 */
export function useClosers(): Closers {
  const closers: Closers = []
  afterEach(async () => {
    let first: unknown = null
    while (closers.length) {
      try {
        await closers.pop()!()
      } catch (err) {
        first ??= err
      }
    }
    if (first !== null) throw first
  })
  return closers
}

/** A fresh temp dir, removed by `closers`. */
export function tempDir(closers: Closers, prefix = 'zoo-proxy-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  closers.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * A port on 127.0.0.1 that refuses connections and that no process can listen on while the test
 * runs: the local end of a connection we hold open (a bound port, but not a listening one), let go
 * by `closers`. An instance registered there is a dead one.
 */
export async function deadPort(closers: Closers): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const held = new Set<net.Socket>()
  server.on('connection', (s) => held.add(s))
  const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject))
  closers.push(
    () =>
      new Promise<void>((r) => {
        client.destroy()
        held.forEach((s) => s.destroy())
        server.close(() => r())
      }),
  )
  return client.localPort!
}

export interface Child {
  readonly child: ChildProcess
  /** Resolves with the exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>
  stdout(): string
  stderr(): string
}

/** Children still running, killed when the test process exits however it exits (see .mocharc's `exit`). */
const liveChildren = new Set<{ kill(): void }>()
process.once('exit', () => {
  for (const c of liveChildren) c.kill()
})

/**
 * `node <args>` as a child process with its output kept, killed by `closers` (SIGKILL, its whole
 * process group when `group`: for a child that starts children of its own) if still running.
 */
export function spawnNode(closers: Closers, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; group?: boolean } = {}): Child {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env, detached: opts.group ?? false })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d) => (stdout += d))
  child.stderr!.on('data', (d) => (stderr += d))
  let done = false
  const killer = {
    kill: () => {
      try {
        if (opts.group) process.kill(-child.pid!, 'SIGKILL')
        else child.kill('SIGKILL')
      } catch {
        // Gone already.
      }
    },
  }
  liveChildren.add(killer)
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      done = true
      if (!opts.group) liveChildren.delete(killer)
      resolve(code)
    }),
  )
  closers.push(async () => {
    if (opts.group) {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // The group is gone already.
      }
    } else if (!done) child.kill('SIGKILL')
    await exited
  })
  return { child, exited, stdout: () => stdout, stderr: () => stderr }
}

/** The ports a zoo-proxy process logged in its "zoo-proxy listening" line (log level info). */
export async function listeningPorts(p: Child, role = 'single'): Promise<{ port: number; adminPort: number }> {
  const line = await waitFor(() => p.stdout().split('\n').find((l) => l.includes('"zoo-proxy listening"') && l.includes(`"role":"${role}"`)), `the ${role} process to listen`, 20_000)
  const { listen, admin } = JSON.parse(line) as { listen: string | null; admin: string | null }
  const port = (at: string | null) => (at === null ? 0 : Number(at.slice(at.lastIndexOf(':') + 1)))
  return { port: port(listen), adminPort: port(admin) }
}

/** The value of one Prometheus series, e.g. `zoo_proxy_requests_total{service="example",code="200"}`; 0 when absent. */
export function metric(text: string, series: string): number {
  for (const line of text.split('\n')) if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1))
  return 0
}

/** The admin listener's /metrics text. */
export async function scrape(adminPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`)
  expect(res.status).to.equal(200)
  return res.text()
}

/** A ZooKeeper for the whole file: mocha before/after hooks. */
export function useZooKeeper(servers = 1): { readonly zk: ZkCluster; readonly admin: ZkSession } {
  const ctx = {} as { zk: ZkCluster; admin: ZkSession }
  before(async function () {
    this.timeout(60_000)
    ctx.zk = await startZooKeeper({ servers })
    ctx.admin = new ZkSession({ connect: ctx.zk.connectString, sessionTimeoutMs: 4000, logger: silentLogger })
    ctx.admin.start()
  })
  after(async function () {
    this.timeout(30_000)
    ctx.admin?.close()
    await ctx.zk?.stop()
  })
  return ctx
}

/** Creates (or overwrites) a persistent znode, parents included. */
export async function putNode(s: ZkSession, path: string, data: string | object = ''): Promise<void> {
  const buf = Buffer.from(typeof data === 'string' ? data : JSON.stringify(data))
  await s.ensureParents(path)
  try {
    await s.create(path, buf, 'persistent')
  } catch (err) {
    if (!isNodeExists(err)) throw err
    await s.setData(path, buf)
  }
}

let seq = 0
/** A service path of its own for each test. */
export function uniquePath(prefix = 'svc'): string {
  return `/test/${prefix}-${process.pid}-${++seq}`
}

export async function makeConfig(zkConnect: string, services: object[], extra: object = {}): Promise<Config> {
  return validateConfig(
    {
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      zookeeper: { connect: zkConnect, sessionTimeoutMs: 4000 },
      log: { level: 'silent' },
      services,
      ...extra,
    },
    process.cwd(),
  )
}

/** Builds, starts and waits for a proxy to be ready. Remember to close it. */
export async function startProxy(config: Config, deps: ProxyDeps = {}): Promise<ZooProxy & { port: number; adminPort: number }> {
  const proxy = await createProxy(config, { logger: silentLogger, ...deps })
  await proxy.start()
  await waitFor(() => proxy.ready, 'proxy ready')
  return Object.assign(proxy, { port: proxy.address().port, adminPort: proxy.adminAddress()?.port ?? 0 })
}

/** A logger that keeps every line, for asserting warnings. */
export function recordingLogger(): Logger & { lines: { level: string; msg: string; obj: object }[] } {
  const lines: { level: string; msg: string; obj: object }[] = []
  const make = (bindings: object): Logger => ({
    debug: (obj, msg) => lines.push({ level: 'debug', msg, obj: { ...bindings, ...obj } }),
    info: (obj, msg) => lines.push({ level: 'info', msg, obj: { ...bindings, ...obj } }),
    warn: (obj, msg) => lines.push({ level: 'warn', msg, obj: { ...bindings, ...obj } }),
    error: (obj, msg) => lines.push({ level: 'error', msg, obj: { ...bindings, ...obj } }),
    child: (b) => make({ ...bindings, ...b }),
  })
  return Object.assign(make({}), { lines })
}

/**
 * Expires a session the way ZooKeeper does when a client is gone: a second client attaches to the
 * same session id and password and closes it. The victim may take its session back before the
 * close arrives (a race the server allows), so this repeats until `expired()` says it worked.
 */
export async function expireSession(connect: string, creds: () => { sessionId: Buffer; password: Buffer } | null, expired: () => boolean): Promise<void> {
  for (let i = 0; i < 10 && !expired(); i++) {
    const c = creds()
    if (c === null) throw new Error('no session to expire')
    const options = { sessionTimeout: 4000, sessionId: c.sessionId, sessionPassword: c.password } as object
    const client = zookeeper.createClient(connect, options)
    try {
      // The credentials may name a session the server already ended (or one the proxy just
      // replaced): then the attach ends in 'expired', or never connects; either way try again
      // with the credentials as they are now, until the loop's bound.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 10_000)
        const done = (): void => {
          clearTimeout(timer)
          resolve()
        }
        client.once('connected', done)
        client.once('expired', done)
        client.connect()
      })
    } finally {
      client.close()
    }
    await waitFor(expired, 'the session to expire', 2000).catch(() => {})
  }
  if (!expired()) throw new Error('could not expire the session')
}

/** Counts what each upstream answered over `n` sequential GETs. */
export async function spread(port: number, n: number, path = '/'): Promise<Record<string, number>> {
  const counts: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const r = await send(port, path)
    const key = r.status === 200 ? r.body : `status ${r.status}`
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

/** Bytes no two 4-byte words of which are alike, so a piece lost, doubled or overwritten shows. */
export function patterned(words: number): Buffer {
  const b = Buffer.allocUnsafe(words * 4)
  for (let i = 0; i < words; i++) b.writeUInt32BE(i, i * 4)
  return b
}
