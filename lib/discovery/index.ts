// Discovery: one ZooKeeper session shared by every service, one watcher per service path.
import { ServiceWatcher } from './service-watcher.js'
import type { ServiceWatcherStatus } from './service-watcher.js'
import type { Endpoint } from './endpoint.js'
import type { SessionState, ZkSession } from './zk-session.js'
import type { Logger } from '../log.js'

export type { Endpoint } from './endpoint.js'
export { decodeInstance } from './codecs.js'
export { ZkSession } from './zk-session.js'
export type { SessionState } from './zk-session.js'

export interface DiscoveryOptions {
  readonly session: ZkSession
  readonly services: readonly { readonly name: string; readonly path: string }[]
  readonly logger: Logger
  readonly onSnapshot: (service: string, endpoints: readonly Endpoint[]) => void
  readonly random?: () => number
}

export interface DiscoveryStatus {
  readonly session: ReturnType<ZkSession['info']>
  readonly services: Readonly<Record<string, ServiceWatcherStatus>>
}

export class Discovery {
  readonly #session: ZkSession
  readonly #watchers = new Map<string, ServiceWatcher>()
  #unsubscribe: (() => void) | undefined

  constructor(opts: DiscoveryOptions) {
    this.#session = opts.session
    for (const s of opts.services) {
      this.#watchers.set(
        s.name,
        new ServiceWatcher({
          name: s.name,
          path: s.path,
          session: opts.session,
          logger: opts.logger,
          random: opts.random,
          onSnapshot: (endpoints) => opts.onSnapshot(s.name, endpoints),
        }),
      )
    }
  }

  start(): void {
    if (this.#unsubscribe) return
    this.#unsubscribe = this.#session.subscribe({
      onSession: () => this.#watchers.forEach((w) => w.resync()),
      onReconnect: () => this.#watchers.forEach((w) => w.retryFailed()),
    })
    this.#session.start()
  }

  /** True once every service has had one full read. */
  get ready(): boolean {
    for (const w of this.#watchers.values()) if (!w.synced) return false
    return true
  }

  get sessionState(): SessionState {
    return this.#session.state
  }

  status(): DiscoveryStatus {
    const services: Record<string, ServiceWatcherStatus> = {}
    for (const [name, w] of this.#watchers) services[name] = w.status()
    return { session: this.#session.info(), services }
  }

  close(): void {
    this.#unsubscribe?.()
    for (const w of this.#watchers.values()) w.close()
    this.#session.close()
  }
}
