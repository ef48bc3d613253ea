// Registering one instance as an ephemeral znode in our JSON format, and keeping it there: the node
// is (re)created on every new session, so a session expiry costs the instance one re-registration,
// not its place in the service. With a health check, the node exists only while the check passes.

import { Buffer } from 'node:buffer'
import { request } from 'undici'
import { ZkSession, isNodeExists } from './zk-session.js'
import type { ZkAuth } from './zk-session.js'
import { silentLogger } from '../log.js'
import type { Logger } from '../log.js'
import { joinHostPort } from '../host-port.js'

export interface RegisterOptions {
  /** ZooKeeper connection string. */
  readonly connect: string
  /** The service path; the instance becomes one child of it. */
  readonly path: string
  readonly host: string
  readonly port: number
  /** Default 1. */
  readonly weight?: number
  /** Child name; default `host:port`. */
  readonly name?: string
  /** Default 10000 ms. */
  readonly sessionTimeoutMs?: number
  /**
   * Credentials for the session; with them the nodes made (the instance and any missing parent)
   * are the credential's to change or delete, and readable by everyone.
   */
  readonly auth?: readonly ZkAuth[]
  /** Register only while a GET of this URL answers 2xx, checked every `intervalMs` (default 2000). */
  readonly check?: { readonly url: string; readonly intervalMs?: number; readonly timeoutMs?: number }
  readonly logger?: Logger
}

export interface Registration {
  /** The instance's znode path. */
  readonly znode: string
  /** Whether the node is written now (false between sessions, while the check fails, after close). */
  readonly registered: boolean
  setWeight(weight: number): Promise<void>
  /** Writes `state: draining`: proxies send no new requests; in-flight ones finish. */
  drain(): Promise<void>
  /** Stops checking, deletes the node and ends the session. */
  close(): Promise<void>
  /** The session, for tests. */
  readonly session: ZkSession
}

async function passes(url: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await request(url, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
    await res.body.dump()
    return res.statusCode >= 200 && res.statusCode < 300
  } catch {
    return false
  }
}

export async function register(opts: RegisterOptions): Promise<Registration> {
  const logger = opts.logger ?? silentLogger
  const log = logger.child({ component: 'registry' })
  const session = new ZkSession({ connect: opts.connect, sessionTimeoutMs: opts.sessionTimeoutMs ?? 10_000, logger, ...(opts.auth === undefined ? {} : { auth: opts.auth }) })
  const name = opts.name ?? joinHostPort(opts.host, opts.port)
  const znode = `${opts.path === '/' ? '' : opts.path}/${name}`
  let data = { host: opts.host, port: opts.port, weight: opts.weight ?? 1, state: 'up' as 'up' | 'draining' }
  let registered = false
  let closed = false
  let healthy = opts.check === undefined
  let retryTimer: NodeJS.Timeout | undefined
  const encode = () => Buffer.from(JSON.stringify(data))

  // One reconciliation at a time: make ZooKeeper match what is wanted (node iff healthy and open).
  let chain: Promise<void> = Promise.resolve()
  const reconcile = (): Promise<void> =>
    (chain = chain.then(async () => {
      const wanted = healthy && !closed
      try {
        if (wanted && !registered) {
          await session.ensureParents(znode)
          try {
            await session.create(znode, encode(), 'ephemeral')
          } catch (err) {
            if (!isNodeExists(err)) throw err
            // Left by an earlier session of this instance that has not expired yet: take it over.
            await session.remove(znode)
            await session.create(znode, encode(), 'ephemeral')
          }
          registered = true
          log.info({ znode, data }, 'instance registered')
        } else if (!wanted && registered) {
          await session.remove(znode)
          registered = false
          log.info({ znode }, 'instance deregistered')
        }
      } catch (err) {
        log.warn({ err: String(err) }, 'registration change failed, retrying')
        clearTimeout(retryTimer)
        retryTimer = setTimeout(() => void reconcile(), 500)
        retryTimer.unref()
      }
    }))

  let firstSession: () => void = () => {}
  const connected = new Promise<void>((resolve) => (firstSession = resolve))
  session.subscribe({
    onSession: () => {
      registered = false // an ephemeral node goes with the session that made it
      void reconcile().then(firstSession)
    },
  })
  session.start()

  let checkTimer: NodeJS.Timeout | undefined
  if (opts.check !== undefined) {
    const { url, intervalMs = 2000, timeoutMs = 1000 } = opts.check
    const check = async () => {
      const ok = await passes(url, timeoutMs)
      if (closed || ok === healthy) return
      healthy = ok
      log.info({ url }, `health check ${ok ? 'failing -> passing' : 'passing -> failing'}`)
      await reconcile()
    }
    await check()
    checkTimer = setInterval(() => void check(), intervalMs)
    checkTimer.unref()
  }
  await connected

  const update = async (): Promise<void> => {
    await chain
    if (registered) await session.setData(znode, encode())
  }
  return {
    znode,
    session,
    get registered() {
      return registered
    },
    async setWeight(weight: number) {
      data = { ...data, weight }
      await update()
    },
    async drain() {
      data = { ...data, state: 'draining' }
      await update()
    },
    async close() {
      if (closed) return
      closed = true
      clearInterval(checkTimer)
      clearTimeout(retryTimer)
      await reconcile()
      session.close()
    },
  }
}
