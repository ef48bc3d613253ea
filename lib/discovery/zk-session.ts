// One ZooKeeper session for the process, kept alive across everything ZooKeeper can do to it.
//
// node-zookeeper-client reconnects by itself after a dropped connection (same session, watches
// re-sent), but it has three gaps this wrapper closes (what the proxy then does is in
// docs/zookeeper.md, "ZooKeeper in production"):
//  - after EXPIRED the client is dead for good: we close it and build a new one;
//  - it never notices a frozen or partitioned server: a watchdog probes `exists('/')` and drops the
//    connection when no answer comes within a third of the session timeout, so the client moves on;
//  - calls made while disconnected wait forever: every call here has its own deadline.
// Disconnected for longer than the session timeout means the server has expired us: we treat it
// as expired at once rather than wait for a reconnect to be told so.

import { Buffer } from 'node:buffer'
import zookeeper from 'node-zookeeper-client'
import type { ACL, Client, Event as ZkEvent } from 'node-zookeeper-client'
import { ProxyError } from '../errors.js'
import type { Logger } from '../log.js'
import { joinHostPort } from '../host-port.js'

const { State, Exception, CreateMode } = zookeeper

export type SessionState = 'connecting' | 'connected' | 'disconnected' | 'expired' | 'closed'
export type Watcher = (event: ZkEvent) => void

export interface SessionListener {
  /** A new session (the first, or one replacing an expired one): re-read all, re-arm all watches. */
  onSession?(): void
  /** Connected again to the same session: retry whatever failed meanwhile. */
  onReconnect?(): void
}

export interface ZkSessionOptions {
  /** `host:port[,host:port...][/chroot]`. */
  readonly connect: string
  readonly sessionTimeoutMs: number
  /** Deadline of one ZooKeeper call. Default: a third of the session timeout, within [500, 5000] ms. */
  readonly callTimeoutMs?: number
  /** Watchdog probe period and deadline. Default: a third of the session timeout, at least 200 ms. */
  readonly watchdogMs?: number
  readonly logger: Logger
  /** Credentials added to every connection of the session (`digest` with `user:pass`). */
  readonly auth?: readonly ZkAuth[]
}

export interface ZkAuth {
  readonly scheme: string
  readonly credentials: string
}

/**
 * Nodes an authenticated session creates: all rights to the credential that made them, read to
 * everyone. A node's children can then be created or deleted only by holders of the credential.
 */
const PROTECTED_ACL = [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('auth', '')), new zookeeper.ACL(zookeeper.Permission.READ, new zookeeper.Id('world', 'anyone'))]
const OPEN_ACL = [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))]
/**
 * A folder every member of a fleet registers in (a fleet's `proxies/`): the credential that made
 * it keeps all rights; anyone may read it and create a child there (each child then carries its
 * creator's own ACL), so a proxy need not hold the push credential to say what it applied.
 */
export const REGISTRY_FOLDER_ACL = [
  new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('auth', '')),
  new zookeeper.ACL(zookeeper.Permission.READ | zookeeper.Permission.CREATE, new zookeeper.Id('world', 'anyone')),
]

/** What the patched client library (patches/node-zookeeper-client+*.patch) keeps of unreadable frames. */
interface WireGuard {
  readonly readSocketData?: unknown
  readonly wireErrors?: number
  readonly lastWireError?: Error | null
  readonly lastSocketError?: (Error & { code?: string }) | null
  readonly socket?: { remoteAddress?: string; remotePort?: number; destroy(): void }
  /** The server the current connection is to (or being made to). */
  readonly currentServer?: { host: string; port: number }
}

function connectionManager(client: Client): WireGuard | undefined {
  return (client as unknown as { connectionManager?: WireGuard }).connectionManager
}

/** `host:port` of the server the connection is with (or being made to), IPv6 in brackets. */
function serverOf(cm: WireGuard | undefined): string | undefined {
  const s = cm?.currentServer
  if (s === undefined) return undefined
  return joinHostPort(s.host, s.port)
}

function errorCode(err: unknown): number | undefined {
  const fn = (err as { getCode?: () => number } | null)?.getCode
  return typeof fn === 'function' ? fn.call(err) : undefined
}

export function isNoNode(err: unknown): boolean {
  return errorCode(err) === Exception.NO_NODE
}

export function isNodeExists(err: unknown): boolean {
  return errorCode(err) === Exception.NODE_EXISTS
}

/** A node's data with what of its stat the fleet needs (cversion: where its next sequential child is numbered). */
export interface NodeStat {
  readonly data: Buffer
  readonly version: number
  readonly cversion: number
  readonly ctimeMs: number
}

/** One operation of ZkSession.multi. */
export type MultiOp =
  | { readonly op: 'create'; readonly path: string; readonly data: Buffer; readonly sequential?: boolean }
  | { readonly op: 'setData'; readonly path: string; readonly data: Buffer; readonly version: number }
  | { readonly op: 'check'; readonly path: string; readonly version: number }

export function isBadVersion(err: unknown): boolean {
  return errorCode(err) === Exception.BAD_VERSION
}

export class ZkSession {
  readonly #opts: ZkSessionOptions
  readonly #log: Logger
  readonly #callTimeoutMs: number
  readonly #watchdogMs: number
  readonly #listeners = new Set<SessionListener>()
  /** Calls held until the session is connected (with credentials: see #call). */
  #heldCalls: (() => void)[] = []
  #client: Client | null = null
  #state: SessionState = 'connecting'
  #sessionId = ''
  #stateSince = Date.now()
  #lastContactAt = 0
  #disconnectTimer: NodeJS.Timeout | undefined
  #watchdogTimer: NodeJS.Timeout | undefined
  #probeStartedAt = 0
  /** When the session stopped being connected (0: connected), for the handshake watchdog. */
  #stuckSince = 0
  #sessions = 0
  /** Unreadable frames already logged (the client library counts them). */
  #wireErrorsSeen = 0

  constructor(opts: ZkSessionOptions) {
    this.#opts = opts
    this.#log = opts.logger.child({ component: 'zookeeper' })
    const third = Math.floor(opts.sessionTimeoutMs / 3)
    this.#callTimeoutMs = opts.callTimeoutMs ?? Math.min(5000, Math.max(500, third))
    this.#watchdogMs = opts.watchdogMs ?? Math.max(200, third)
  }

  get state(): SessionState {
    return this.#state
  }

  /** Session state for `/upstreams` and logs. */
  info(): { state: SessionState; sessionId: string; stateSinceMs: number; lastContactAgoMs: number | null; sessions: number } {
    const now = Date.now()
    return {
      state: this.#state,
      sessionId: this.#sessionId,
      stateSinceMs: now - this.#stateSince,
      lastContactAgoMs: this.#lastContactAt === 0 ? null : now - this.#lastContactAt,
      sessions: this.#sessions,
    }
  }

  subscribe(listener: SessionListener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  start(): void {
    if (this.#client !== null || this.#state === 'closed') return
    this.#newClient()
    this.#watchdogTimer = setInterval(() => this.#probe(), this.#watchdogMs)
    this.#watchdogTimer.unref()
  }

  #setState(next: SessionState): void {
    if (next === this.#state) return
    this.#log.info({ from: this.#state, to: next, sessionId: this.#sessionId }, `zookeeper session ${this.#state} -> ${next}`)
    this.#state = next
    this.#stateSince = Date.now()
  }

  #newClient(): void {
    const client = zookeeper.createClient(this.#opts.connect, {
      sessionTimeout: this.#opts.sessionTimeoutMs,
      spinDelay: 200,
      retries: 0,
    })
    // Sent with the connect and again after every reconnect by the client library.
    for (const a of this.#opts.auth ?? []) client.addAuthInfo(a.scheme, Buffer.from(a.credentials))
    this.#client = client
    this.#wireErrorsSeen = 0
    const cm = connectionManager(client)
    if (typeof cm?.readSocketData !== 'function') {
      // Without the patch a frame the library cannot read throws from its socket handler and ends
      // the process; say so rather than find out in production.
      this.#log.error({}, 'node-zookeeper-client is not patched (run `npx patch-package` in the install directory): a malformed frame from ZooKeeper can end the process')
    }
    client.on('state', (s) => {
      if (this.#client !== client) return
      if (s === State.SYNC_CONNECTED || s === State.CONNECTED_READ_ONLY) this.#onConnected(client)
      else if (s === State.DISCONNECTED) this.#onDisconnected()
      else if (s === State.EXPIRED) this.#replaceClient('session expired')
      else if (s === State.AUTH_FAILED) this.#log.error({}, 'zookeeper authentication failed')
    })
    client.connect()
  }

  #onConnected(client: Client): void {
    clearTimeout(this.#disconnectTimer)
    this.#lastContactAt = Date.now()
    const id = client.getSessionId().toString('hex')
    const fresh = id !== this.#sessionId
    this.#sessionId = id
    this.#setState('connected')
    if (fresh) this.#sessions++
    const held = this.#heldCalls
    this.#heldCalls = []
    for (const run of held) run()
    for (const l of [...this.#listeners]) {
      try {
        if (fresh) l.onSession?.()
        else l.onReconnect?.()
      } catch (err) {
        this.#log.error({ err }, 'zookeeper session listener threw')
      }
    }
  }

  #onDisconnected(): void {
    const cm = this.#client === null ? undefined : connectionManager(this.#client)
    if (cm?.wireErrors !== undefined && cm.wireErrors > this.#wireErrorsSeen) {
      this.#wireErrorsSeen = cm.wireErrors
      this.#log.warn({ server: serverOf(cm), err: String(cm.lastWireError) }, 'zookeeper sent what is not a ZooKeeper reply; connection dropped, reconnecting')
    }
    this.#setState('disconnected')
    clearTimeout(this.#disconnectTimer)
    // The server expires a session it has not heard from for the session timeout; once that much
    // time has passed the session is gone whatever the client thinks.
    this.#disconnectTimer = setTimeout(() => {
      if (this.#state === 'disconnected') this.#replaceClient('disconnected longer than the session timeout')
    }, this.#opts.sessionTimeoutMs)
    this.#disconnectTimer.unref()
  }

  #replaceClient(reason: string): void {
    if (this.#state === 'closed') return
    this.#log.warn({ reason, sessionId: this.#sessionId }, 'zookeeper session lost, starting a new one')
    clearTimeout(this.#disconnectTimer)
    this.#setState('expired')
    const old = this.#client
    this.#client = null
    old?.close()
    this.#setState('connecting')
    this.#newClient()
  }

  /** The frozen-server watchdog: a cheap round trip; no answer in time means drop the connection. */
  #probe(): void {
    const client = this.#client
    if (client === null) return
    if (this.#state !== 'connected') {
      // The same blindness while connecting: a frozen server accepts the TCP connection (the
      // kernel does) and never answers the session handshake, and the client waits forever.
      if (this.#stuckSince === 0) this.#stuckSince = Date.now()
      else if (Date.now() - this.#stuckSince >= 2 * this.#watchdogMs) {
        const cm = connectionManager(client)
        const err = cm?.lastSocketError
        this.#log.warn(
          { waitedMs: Date.now() - this.#stuckSince, server: serverOf(cm), lastError: err == null ? undefined : (err.code ?? err.message) },
          `zookeeper handshake not answered by ${serverOf(cm) ?? this.#opts.connect}${err == null ? '' : ` (${err.code ?? err.message})`}, trying the next server`,
        )
        this.#stuckSince = Date.now()
        this.#dropConnection(client)
      }
      return
    }
    this.#stuckSince = 0
    if (this.#probeStartedAt !== 0) {
      if (Date.now() - this.#probeStartedAt >= this.#watchdogMs) {
        this.#log.warn({ waitedMs: Date.now() - this.#probeStartedAt }, 'zookeeper server not answering, dropping the connection')
        this.#probeStartedAt = 0
        this.#dropConnection(client)
      }
      return
    }
    const started = Date.now()
    this.#probeStartedAt = started
    client.exists('/', (err) => {
      if (this.#probeStartedAt !== started) return
      this.#probeStartedAt = 0
      if (!err) this.#lastContactAt = Date.now()
    })
  }

  /**
   * The library has no public way to drop a connection; destroying its socket makes it reconnect,
   * to the next server of the connection string when there is one.
   */
  #dropConnection(client: Client): void {
    const cm = (client as unknown as { connectionManager?: { socket?: { destroy(): void } } }).connectionManager
    cm?.socket?.destroy()
  }

  /** Runs one client call with a deadline. */
  #call<T>(what: string, path: string, run: (client: Client, done: (err: unknown, value?: T) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const client = this.#client
      if (client === null || this.#state === 'closed') {
        reject(new ProxyError('ZP_ERR_CLOSED', `zookeeper session closed (${what} ${path})`))
        return
      }
      let settled = false
      const timer = setTimeout(() => {
        settled = true
        reject(new ProxyError('ZP_ERR_ZK_TIMEOUT', `zookeeper ${what} ${path} timed out after ${this.#callTimeoutMs} ms`))
      }, this.#callTimeoutMs)
      const send = (c: Client) =>
        run(c, (err, value) => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          if (err) reject(err)
          else {
            this.#lastContactAt = Date.now()
            resolve(value as T)
          }
        })
      // With credentials, a call waits for the connection: the client library sends the auth
      // packets when its socket connects, behind whatever was queued before, so a call queued
      // while connecting would reach the server unauthenticated (NO_AUTH, INVALID_ACL).
      if ((this.#opts.auth?.length ?? 0) > 0 && this.#state !== 'connected') {
        this.#heldCalls.push(() => {
          if (!settled && this.#client !== null) send(this.#client)
        })
        return
      }
      send(client)
    })
  }

  /** The children of `path`, or null when it does not exist. */
  getChildren(path: string, watcher?: Watcher): Promise<string[] | null> {
    return this.#call<string[] | null>('getChildren', path, (c, done) => {
      const cb = (err: unknown, children: string[]) => (isNoNode(err) ? done(null, null) : done(err, children))
      if (watcher) c.getChildren(path, watcher, cb)
      else c.getChildren(path, cb)
    })
  }

  /** The data of `path` (an empty Buffer for none), or null when it does not exist. */
  getData(path: string, watcher?: Watcher): Promise<Buffer | null> {
    return this.#call<Buffer | null>('getData', path, (c, done) => {
      const cb = (err: unknown, data: Buffer) => (isNoNode(err) ? done(null, null) : done(err, data ?? Buffer.alloc(0)))
      if (watcher) c.getData(path, watcher, cb)
      else c.getData(path, cb)
    })
  }

  exists(path: string, watcher?: Watcher): Promise<boolean> {
    return this.#call<boolean>('exists', path, (c, done) => {
      // The library's types say never null; it answers null for a missing node.
      const cb = (err: unknown, stat: unknown) => done(err, stat !== null && stat !== undefined)
      if (watcher) c.exists(path, watcher, cb)
      else c.exists(path, cb)
    })
  }

  /** Creates the persistent parents of `path` (not `path` itself). */
  async ensureParents(path: string): Promise<void> {
    const parts = path.split('/').filter(Boolean)
    let at = ''
    for (const part of parts.slice(0, -1)) {
      at += `/${part}`
      try {
        await this.create(at, Buffer.alloc(0), 'persistent')
      } catch (err) {
        // ZooKeeper checks the parent's ACL before whether the node exists: a session that may
        // not create under a parent gets NO_AUTH for a folder that is already there.
        if (!isNodeExists(err) && !(await this.exists(at))) throw err
      }
    }
  }

  /**
   * With credentials, the node is the credential's to change (PROTECTED_ACL); without, open.
   * `acl` overrides both (tests and tools that lock a path down further).
   */
  create(path: string, data: Buffer, mode: 'persistent' | 'ephemeral', acl: ACL[] = (this.#opts.auth?.length ?? 0) > 0 ? PROTECTED_ACL : OPEN_ACL): Promise<void> {
    const m = mode === 'ephemeral' ? CreateMode.EPHEMERAL : CreateMode.PERSISTENT
    return this.#call<void>('create', path, (c, done) => c.create(path, data, acl, m, (err) => done(err)))
  }

  setData(path: string, data: Buffer): Promise<void> {
    return this.#call<void>('setData', path, (c, done) => c.setData(path, data, -1, (err) => done(err)))
  }

  remove(path: string): Promise<void> {
    return this.#call<void>('remove', path, (c, done) => c.remove(path, -1, (err) => done(isNoNode(err) ? null : err)))
  }

  /** getData with the node's version and creation time (ms since the epoch), or null when it does not exist. */
  getDataStat(path: string, watcher?: Watcher): Promise<NodeStat | null> {
    return this.#call<NodeStat | null>('getData', path, (c, done) => {
      const cb = (err: unknown, data: Buffer, stat: { version: number; cversion: number; ctime: Buffer }) =>
        isNoNode(err) ? done(null, null) : err ? done(err) : done(null, { data: data ?? Buffer.alloc(0), version: stat.version, cversion: stat.cversion, ctimeMs: Number(stat.ctime.readBigInt64BE(0)) })
      if (watcher) c.getData(path, watcher, cb as never)
      else c.getData(path, cb as never)
    })
  }

  /** The ACL of `path`, or null when it does not exist. */
  getACL(path: string): Promise<ACL[] | null> {
    return this.#call<ACL[] | null>('getACL', path, (c, done) => c.getACL(path, (err, acls) => (isNoNode(err) ? done(null, null) : done(err, acls ?? []))))
  }

  /**
   * One ZooKeeper multi: every op applies or none does. Creates get the same ACL as create()'s
   * default. Resolves with the path of each create, in order (undefined for the other ops).
   * The client library sends version 0 as -1 ("any version"): a caller that must check a
   * version has to make sure it is above 0 (see shared/ZOOKEEPER-NOTES.md).
   */
  multi(ops: readonly MultiOp[]): Promise<(string | undefined)[]> {
    const acl = (this.#opts.auth?.length ?? 0) > 0 ? PROTECTED_ACL : OPEN_ACL
    return this.#call<(string | undefined)[]>('multi', ops[0]?.path ?? '/', (c, done) => {
      const t = c.transaction()
      for (const op of ops) {
        if (op.op === 'create') t.create(op.path, op.data, acl, op.sequential ? CreateMode.PERSISTENT_SEQUENTIAL : CreateMode.PERSISTENT)
        else if (op.op === 'setData') t.setData(op.path, op.data, op.version)
        else t.check(op.path, op.version)
      }
      t.commit((err, results) => done(err, err ? undefined : ((results ?? []) as { path?: string }[]).map((r) => r.path)))
    })
  }

  /** The session id and password, for tests that force an expiry. */
  credentials(): { sessionId: Buffer; password: Buffer } | null {
    const c = this.#client
    return c === null ? null : { sessionId: c.getSessionId(), password: c.getSessionPassword() }
  }

  close(): void {
    if (this.#state === 'closed') return
    clearInterval(this.#watchdogTimer)
    clearTimeout(this.#disconnectTimer)
    this.#setState('closed')
    this.#listeners.clear()
    const client = this.#client
    this.#client = null
    client?.close()
  }
}
