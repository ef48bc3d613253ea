// Discovery: one ZooKeeper session shared by every service, one watcher per service path.
import { ServiceWatcher } from './service-watcher.js'
import { SnapshotWriter, readSnapshotFile } from './snapshot-file.js'
import type { MassRemovalOptions, ServiceWatcherStatus } from './service-watcher.js'
import type { Endpoint } from './endpoint.js'
import type { SessionState, Watcher, ZkSession } from './zk-session.js'
import type { Logger } from '../log.js'
import { ProxyError } from '../errors.js'

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
  /** `path`: the znode path the list was read from (a reload may move a service to another). */
  readonly onSnapshot: (service: string, endpoints: readonly Endpoint[], path: string) => void
  readonly random?: () => number
  /** Why an instance must be skipped though it decoded well (upstreams.allow), or null. */
  readonly admit?: (endpoint: Endpoint) => string | null
}

export interface DiscoveryStatus {
  readonly session: ReturnType<ZkSession['info']>
  readonly services: Readonly<Record<string, ServiceWatcherStatus>>
}

/** A reload's watchers for its added and re-pathed services, each read once (see Discovery.warm). */
export interface WarmedServices {
  /**
   * Switches to exactly the services warm() was given: the warmed watchers take over, those no
   * longer wanted are closed, unchanged ones go on. Returns each warmed service's latest list, for
   * the caller to feed its new balancers before it routes to them (nothing else hands it over).
   */
  commit(): ReadonlyMap<string, readonly Endpoint[]>
  /** Each warmed service's list as read so far (empty when its path has none), committing nothing. */
  peek(): ReadonlyMap<string, readonly Endpoint[]>
  /** Closes the warmed watchers; discovery stays as it was. Idempotent. */
  cancel(): void
}

/** One watched service path, as DiscoveryOptions lists them. */
export type DiscoveredService = DiscoveryOptions['services'][number]

export class Discovery {
  readonly #session: ZkSession
  readonly #opts: DiscoveryOptions
  readonly #saved: Map<string, readonly Endpoint[]>
  readonly #watchers = new Map<string, ServiceWatcher>()
  readonly #specs = new Map<string, DiscoveredService>()
  /** Watchers a reload is warming (see warm()), not yet in use. */
  readonly #warming = new Set<ServiceWatcher>()
  /** One pair of watch functions per path ever watched, relaying to that path's live watchers. */
  readonly #relays = new Map<string, { readonly children: Watcher; readonly data: Watcher; readonly targets: Set<ServiceWatcher> }>()
  /** Each warm() in progress, to be refused when discovery closes. */
  readonly #cancels = new Set<(err: unknown) => void>()
  readonly #writer: SnapshotWriter | null
  readonly #random: () => number
  readonly #jitterMs: number
  #sessions = 0
  #closed = false
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

  #newWatcher(s: DiscoveredService, onSnapshot: (endpoints: readonly Endpoint[]) => void, onFirstRead?: () => void): ServiceWatcher {
    const opts = this.#opts
    let relay = this.#relays.get(s.path)
    if (relay === undefined) {
      const targets = new Set<ServiceWatcher>()
      relay = {
        targets,
        children: () => targets.forEach((w) => w.refresh()),
        data: (event) => targets.forEach((w) => w.dataChanged(event)),
      }
      this.#relays.set(s.path, relay)
    }
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
      onSnapshot,
      watchers: relay,
      ...(onFirstRead === undefined ? {} : { onFirstRead }),
    })
    relay.targets.add(w)
    return w
  }

  /** Closes a watcher and stops relaying its path's events to it. */
  #retire(w: ServiceWatcher, path: string): void {
    w.close()
    this.#relays.get(path)?.targets.delete(w)
  }

  #deliver(s: DiscoveredService, endpoints: readonly Endpoint[]): void {
    this.#writer?.update(s.name, s.path, endpoints)
    this.#opts.onSnapshot(s.name, endpoints, s.path)
  }

  #watch(s: DiscoveredService): void {
    this.#install(s, this.#newWatcher(s, (endpoints) => this.#deliver(s, endpoints)))
  }

  #install(s: DiscoveredService, w: ServiceWatcher): void {
    this.#watchers.set(s.name, w)
    this.#specs.set(s.name, s)
  }

  /** Every watcher the session's events concern: those in use and those warming for a reload. */
  #each(f: (w: ServiceWatcher) => void): void {
    this.#watchers.forEach(f)
    this.#warming.forEach(f)
  }

  /**
   * Envoy's cluster warming, for a reload to `services`: each one that is new or whose path (or
   * keepLastOnEmpty) changed gets a watcher of its own that reads its path now, while the watchers
   * in use go on as they are. Resolves once each has had one full read (a path that does not exist
   * or has no children is read too: an empty list, as Envoy warms a cluster with no hosts at once).
   * Rejects with ZP_ERR_ZK_TIMEOUT (statusCode 503), having closed what it started, when some read
   * has not completed within `timeoutMs`; with ZP_ERR_CLOSED when discovery closes meanwhile.
   */
  warm(services: readonly DiscoveredService[], timeoutMs: number): Promise<WarmedServices> {
    if (this.#closed) return Promise.reject(new ProxyError('ZP_ERR_CLOSED', 'discovery is closed', { statusCode: 503 }))
    type Entry = { readonly spec: DiscoveredService; readonly watcher: ServiceWatcher; list: readonly Endpoint[] | null; read: boolean; committed: boolean }
    const entries = new Map<string, Entry>()
    for (const s of services) {
      const was = this.#specs.get(s.name)
      const sameHold = s.massRemoval?.minKeepPercent === was?.massRemoval?.minKeepPercent && s.massRemoval?.holdMs === was?.massRemoval?.holdMs
      if (was !== undefined && was.path === s.path && was.keepLastOnEmpty === s.keepLastOnEmpty && sameHold) continue
      const entry: Entry = {
        spec: s,
        list: null,
        read: false,
        committed: false,
        watcher: this.#newWatcher(
          s,
          (endpoints) => {
            // Before the commit a list is only kept: nothing routes by it, nothing is written.
            if (entry.committed) this.#deliver(s, endpoints)
            else entry.list = endpoints
          },
          () => {
            entry.read = true
            settle()
          },
        ),
      }
      entries.set(s.name, entry)
    }
    let settled = false
    /** The deadline, set once the reads start. */
    const deadline: { timer?: NodeJS.Timeout } = {}
    const close = () => {
      clearTimeout(deadline.timer)
      for (const e of entries.values()) {
        this.#warming.delete(e.watcher)
        if (!e.committed) this.#retire(e.watcher, e.spec.path)
      }
      this.#cancels.delete(abort)
    }
    const warmed: WarmedServices = {
      commit: () => {
        for (const e of entries.values()) e.committed = true
        close()
        const wanted = new Set(services.map((s) => s.name))
        for (const [name, w] of [...this.#watchers]) {
          if (wanted.has(name) && !entries.has(name)) continue
          this.#retire(w, this.#specs.get(name)!.path)
          this.#watchers.delete(name)
          this.#specs.delete(name)
        }
        const lists = new Map<string, readonly Endpoint[]>()
        for (const [name, e] of entries) {
          // Before start() it is started with the others there.
          this.#install(e.spec, e.watcher)
          if (e.list === null) continue
          lists.set(name, e.list)
          this.#writer?.update(name, e.spec.path, e.list)
        }
        // A service the reload removed or renamed leaves the file too: its old list would
        // otherwise be read back at the next start, for whatever service then has its path.
        this.#writer?.retain(wanted)
        return lists
      },
      peek: () => new Map([...entries].map(([name, e]) => [name, e.list ?? []])),
      cancel: close,
    }
    let resolve!: (w: WarmedServices) => void
    let reject!: (err: unknown) => void
    const done = new Promise<WarmedServices>((res, rej) => {
      resolve = res
      reject = rej
    })
    const settle = () => {
      if (settled || [...entries.values()].some((e) => !e.read)) return
      settled = true
      clearTimeout(deadline.timer)
      resolve(warmed)
    }
    const abort = (err: unknown) => {
      if (settled) return
      settled = true
      close()
      reject(err)
    }
    // Before start() there is no session to read with: the watchers are started with the others.
    if (this.#unsubscribe === undefined || entries.size === 0) {
      for (const e of entries.values()) e.read = true
      settle()
      return done
    }
    this.#cancels.add(abort)
    deadline.timer = setTimeout(() => {
      const waiting = [...entries.values()].filter((e) => !e.read).map((e) => `${e.spec.name} (${e.spec.path})`)
      abort(
        new ProxyError(
          'ZP_ERR_ZK_TIMEOUT',
          `zookeeper did not answer within ${timeoutMs} ms (warmingTimeoutMs) for the instances of ${waiting.join(', ')}; session ${this.#session.state}`,
          { statusCode: 503 },
        ),
      )
    }, timeoutMs)
    deadline.timer.unref()
    for (const e of entries.values()) {
      this.#warming.add(e.watcher)
      e.watcher.start()
      if (this.#session.state === 'connected') e.watcher.resync()
    }
    return done
  }

  start(): void {
    if (this.#unsubscribe) return
    this.#unsubscribe = this.#session.subscribe({
      onSession: () => {
        // The first session reads at once; a replacement one after a jittered pause (herd control:
        // a mass expiry must not turn into every proxy re-reading the ensemble in the same ms).
        if (this.#sessions++ === 0 || this.#jitterMs === 0) {
          this.#each((w) => w.resync())
          return
        }
        clearTimeout(this.#resyncTimer)
        this.#resyncTimer = setTimeout(() => this.#each((w) => w.resync()), Math.floor(this.#random() * this.#jitterMs))
        this.#resyncTimer.unref()
      },
      onReconnect: () => this.#each((w) => w.retryFailed()),
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
    this.#closed = true
    clearTimeout(this.#resyncTimer)
    for (const abort of [...this.#cancels]) abort(new ProxyError('ZP_ERR_CLOSED', 'discovery closed while a reload was warming', { statusCode: 503 }))
    this.#unsubscribe?.()
    for (const w of this.#watchers.values()) w.close()
    this.#session.close()
  }
}
