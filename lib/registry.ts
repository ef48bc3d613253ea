// Registering one instance as an ephemeral znode in our JSON format, and keeping it there: the node
// is (re)created on every new session, so a session expiry costs the instance one re-registration,
// not its place in the service.

import { ZkSession, isNodeExists } from './discovery/zk-session.js'
import { silentLogger } from './log.js'
import type { Logger } from './log.js'

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
  readonly logger?: Logger
}

export interface Registration {
  /** The instance's znode path. */
  readonly znode: string
  /** Whether the node is currently written (false while between sessions or drained-and-closed). */
  readonly registered: boolean
  setWeight(weight: number): Promise<void>
  /** Writes `state: draining`: the proxies stop sending new requests; in-flight ones finish. */
  drain(): Promise<void>
  /** Deletes the node and ends the session. */
  close(): Promise<void>
  /** The session, for tests. */
  readonly session: ZkSession
}

export async function register(opts: RegisterOptions): Promise<Registration> {
  const log = (opts.logger ?? silentLogger).child({ component: 'registry' })
  const session = new ZkSession({ connect: opts.connect, sessionTimeoutMs: opts.sessionTimeoutMs ?? 10_000, logger: opts.logger ?? silentLogger })
  const name = opts.name ?? `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`
  const znode = `${opts.path === '/' ? '' : opts.path}/${name}`
  let data = { host: opts.host, port: opts.port, weight: opts.weight ?? 1, state: 'up' as 'up' | 'draining' }
  let registered = false
  let closed = false
  const encode = () => Buffer.from(JSON.stringify(data))

  const write = async (): Promise<void> => {
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
  }

  let first: { resolve: () => void; reject: (e: unknown) => void } | null = null
  const firstDone = new Promise<void>((resolve, reject) => (first = { resolve, reject }))
  const attempt = (): void => {
    if (closed) return
    write().then(
      () => {
        first?.resolve()
        first = null
      },
      (err) => {
        log.warn({ err: String(err) }, 'registering failed, retrying')
        setTimeout(attempt, 500).unref()
      },
    )
  }
  session.subscribe({
    onSession: () => {
      registered = false
      attempt()
    },
  })
  session.start()
  await firstDone

  const update = async (): Promise<void> => {
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
      try {
        if (registered) await session.remove(znode)
      } catch (err) {
        log.warn({ err: String(err) }, 'could not delete the instance node; it goes with the session')
      }
      registered = false
      session.close()
    },
  }
}
