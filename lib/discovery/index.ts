// Discovery: one ZooKeeper session shared by every service, one watcher per service path.
import { ServiceWatcher } from './service-watcher.js'
import { SnapshotWriter, readSnapshotFile } from './snapshot-file.js'
import type { MassRemovalOptions, ServiceWatcherStatus } from './service-watcher.js'
import type { Endpoint } from './endpoint.js'
import type { SessionState, ZkSession } from './zk-session.js'
import type { Logger } from '../log.js'

export type { Endpoint } from './endpoint.js'
export { decodeInstance } from './codecs.js'
export { ZkSession } from './zk-session.js'
export type { SessionState } from './zk-session.js'

export interface DiscoveryOptions {
  readonly session: ZkSession
  readonly services: readonly {
    readonly name: string
    readonly path: string
    readonly keepLastOnEmpty?: boolean
    /** Absent: off. */
    readonly massRemoval?: MassRemovalOptions
  }[]
  /** Write the last known instances here, and start from them when ZooKeeper is not there yet. */
  readonly snapshotFile?: string
  /** Re-reads after a new session wait a random 0..this ms, so a fleet does not re-read in step. */
  readonly resyncJitterMs?: number
  readonly logger: Logger
  readonly onSnapshot: (service: string, endpoints: readonly Endpoint[]) => void
  readonly random?: () => number
  /** Why an instance must be skipped though it decoded well (upstreams.allow), or null. */
  readonly admit?: (endpoint: Endpoint) => string | null
}

export interface DiscoveryStatus {
  readonly session: ReturnType<ZkSession['info']>
  readonly services: Readonly<Record<string, ServiceWatcherStatus>>
}

/** One watched service path, as DiscoveryOptions lists them. */
export type DiscoveredService = DiscoveryOptions['services'][number]

export class Discovery {
  readonly #session: ZkSession
  readonly #opts: DiscoveryOptions
  readonly #saved: Map<string, readonly Endpoint[]>
  readonly #watchers = new Map<string, ServiceWatcher>()
  readonly #specs = new Map<string, DiscoveredService>()
  readonly #writer: SnapshotWriter | null
  readonly #random: () => number
  readonly #jitterMs: number
  #sessions = 0
  #resyncTimer: NodeJS.Timeout | undefined
  #unsubscribe: (() => void) | undefined

  constructor(opts: DiscoveryOptions) {
    this.#session = opts.session
    this.#random = opts.random ?? Math.random
    this.#jitterMs = opts.resyncJitterMs ?? 250
    this.#writer = opts.snapshotFile === undefined ? null : new SnapshotWriter(opts.snapshotFile, opts.logger)
    this.#opts = opts
    this.#saved = opts.snapshotFile === undefined ? new Map() : readSnapshotFile(opts.snapshotFile, opts.logger)
    for (const s of opts.services) this.#watch(s)
  }

  #watch(s: DiscoveredService): ServiceWatcher {
    const opts = this.#opts
    const w = new ServiceWatcher({
      name: s.name,
      path: s.path,
      session: opts.session,
      logger: opts.logger,
      random: opts.random,
      keepLastOnEmpty: s.keepLastOnEmpty,
      massRemoval: s.massRemoval,
      admit: opts.admit,
      initial: this.#saved.get(s.path),
      onSnapshot: (endpoints) => {
        this.#writer?.update(s.name, s.path, endpoints)
        opts.onSnapshot(s.name, endpoints)
      },
    })
    this.#watchers.set(s.name, w)
    this.#specs.set(s.name, s)
    return w
  }

  /**
   * Watches exactly these services from now on (a reload), on the same session: a new or moved
   * path gets a watcher (read at once when the session is up), a removed one is unwatched, an
   * unchanged one keeps its watcher and its last list.
   */
  setServices(services: readonly DiscoveredService[]): void {
    const wanted = new Map(services.map((s) => [s.name, s]))
    for (const [name, w] of [...this.#watchers]) {
      const now = wanted.get(name)
      const was = this.#specs.get(name)!
      const sameHold = now?.massRemoval?.minKeepPercent === was.massRemoval?.minKeepPercent && now?.massRemoval?.holdMs === was.massRemoval?.holdMs
      if (now !== undefined && now.path === was.path && now.keepLastOnEmpty === was.keepLastOnEmpty && sameHold) continue
      w.close()
      this.#watchers.delete(name)
      this.#specs.delete(name)
    }
    for (const s of services) {
      if (this.#watchers.has(s.name)) continue
      const w = this.#watch(s)
      if (this.#unsubscribe === undefined) continue
      w.start()
      if (this.#session.state === 'connected') w.resync()
    }
  }

  start(): void {
    if (this.#unsubscribe) return
    this.#unsubscribe = this.#session.subscribe({
      onSession: () => {
        // The first session reads at once; a replacement one after a jittered pause (herd control:
        // a mass expiry must not turn into every proxy re-reading the ensemble in the same ms).
        if (this.#sessions++ === 0 || this.#jitterMs === 0) {
          this.#watchers.forEach((w) => w.resync())
          return
        }
        clearTimeout(this.#resyncTimer)
        this.#resyncTimer = setTimeout(() => this.#watchers.forEach((w) => w.resync()), Math.floor(this.#random() * this.#jitterMs))
        this.#resyncTimer.unref()
      },
      onReconnect: () => this.#watchers.forEach((w) => w.retryFailed()),
    })
    this.#watchers.forEach((w) => w.start())
    this.#session.start()
  }

  /** True once every service has had one full read (or serves what the snapshot file had). */
  get ready(): boolean {
    for (const w of this.#watchers.values()) if (!w.synced && !w.status().fromSnapshot) return false
    return true
  }

  /** Resolves once the snapshot file has everything handed over so far. */
  async snapshotWritten(): Promise<void> {
    await this.#writer?.flushed()
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
    clearTimeout(this.#resyncTimer)
    this.#unsubscribe?.()
    for (const w of this.#watchers.values()) w.close()
    this.#session.close()
  }
}
