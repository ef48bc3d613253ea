// Watches one service path: its children are the instances, each child's data says where it is.
//
// Watches are one-shot and carry no data, so every event means "re-read and re-arm". One stable
// watcher function per kind (the client tells watchers apart by identity; a fresh closure per call
// would pile up listeners). Reads are coalesced: an event that arrives while a listing runs only
// marks it to run once more. A failed read never empties anything: the last good list stays and
// the read is retried with backoff, or at once when the session reconnects.

import path from 'node:path/posix'
import { decodeInstance } from './codecs.js'
import { endpointsEqual } from './endpoint.js'
import type { Endpoint } from './endpoint.js'
import type { Watcher, ZkSession } from './zk-session.js'
import type { Logger } from '../log.js'
import { joinHostPort } from '../host-port.js'

export interface ServiceWatcherOptions {
  readonly name: string
  readonly path: string
  readonly session: ZkSession
  readonly logger: Logger
  /** Gets the whole list, sorted by key; called asynchronously, only on change, never after close. */
  readonly onSnapshot: (endpoints: readonly Endpoint[]) => void
  readonly random?: () => number
  /**
   * An update that would empty a service that had instances (a mass expiry, a wrong path) keeps
   * the previous instances instead, marked stale, until ZooKeeper lists some again. Default true.
   */
  readonly keepLastOnEmpty?: boolean
  /** Mass-removal protection (see MassRemovalOptions); absent: off. */
  readonly massRemoval?: MassRemovalOptions
  /** Why an instance that decoded well must still be skipped (upstreams.allow), or null. */
  readonly admit?: (endpoint: Endpoint) => string | null
  /** Instances known before the first read (from a snapshot file); served until ZooKeeper answers. */
  readonly initial?: readonly Endpoint[]
  /** Once, after the first full read's list went to onSnapshot (a reload's warming waits for it). */
  readonly onFirstRead?: () => void
  /**
   * The watch functions to arm instead of this watcher's own (which call refresh() and
   * dataChanged()). The ZooKeeper client keeps every distinct function until its watch fires, so a
   * watcher closed by a reload would stay referenced there; Discovery passes one pair per path,
   * shared by every watcher that path ever has, and relays the events to the live ones.
   */
  readonly watchers?: { readonly children: Watcher; readonly data: Watcher }
}

/**
 * Mass-removal protection, for what keepLastOnEmpty does not cover: an update that removes most of
 * a service's instances but not all (a mass session expiry read half-way, 5,000 deletions seen as a
 * few partial listings). When ZooKeeper lists fewer than `minKeepPercent` % of the instances the
 * service had within the last `holdMs` (those listed plus those that went missing within it), the
 * served instances it stopped listing stay until `holdMs` after they went missing, or until it lists
 * them or enough others again; then the removal is honoured. An empty listing is left to
 * keepLastOnEmpty (kept without limit, or emptied at once). So a real mass deregistration takes
 * effect, at most `holdMs` late, while a storm of expiries whose instances re-register in time
 * never concentrates the traffic on the few that happened to be listed.
 *
 * The reasoning of Envoy's panic threshold (below 50% healthy, spread over all) and of Eureka's
 * self-preservation (expiries stop while renewals are below 85%), bounded in time because an
 * instance that is really gone costs failed attempts (retried elsewhere and ejected by outlier
 * detection), which an empty service does not: keepLastOnEmpty keeps its last set without limit.
 */
export interface MassRemovalOptions {
  /** 0-100; 0 is off. */
  readonly minKeepPercent: number
  /** How long a missing instance may stay, from when it went missing. */
  readonly holdMs: number
}

export interface ServiceWatcherStatus {
  readonly synced: boolean
  readonly pathExists: boolean
  readonly lastSyncAt: number | null
  readonly instances: number
  readonly skipped: readonly { readonly name: string; readonly reason: string }[]
  /** Children kept with a value brought into range (a weight clamped), and what was done. */
  readonly warnings: readonly { readonly name: string; readonly reason: string }[]
  /** Some or all of the instances served are ones ZooKeeper no longer lists (keepLastOnEmpty, massRemoval). */
  readonly keptLast: boolean
  /** How many of the instances served ZooKeeper no longer lists. */
  readonly held: number
  /** Serving instances from the snapshot file, not yet read from ZooKeeper. */
  readonly fromSnapshot: boolean
}

const RETRY_MIN_MS = 100
const RETRY_MAX_MS = 5_000

export class ServiceWatcher {
  readonly #o: ServiceWatcherOptions
  readonly #log: Logger
  /** Child name -> decoded endpoint, or the reason it was skipped. */
  readonly #children = new Map<string, Endpoint | { skipped: string }>()
  /** Child name -> what was clamped in its data (the instance itself is in #children). */
  readonly #clamped = new Map<string, string>()
  /** The names of the latest listing; a read of a name not in it is stale and dropped. */
  #listed = new Set<string>()
  /** Names whose data must be read again at the next listing (a data watch fired or a read failed). */
  readonly #dirty = new Set<string>()
  /** child name -> the data text already warned about, so a bad znode warns once, not per read. */
  readonly #warned = new Map<string, string>()
  #listing = false
  #relist = false
  #fullReread = false
  #synced = false
  #pathExists = false
  #lastSyncAt: number | null = null
  #closed = false
  #failed = false
  #retryTimer: NodeJS.Timeout | undefined
  #retryDelayMs = RETRY_MIN_MS
  #emitScheduled = false
  #last: readonly Endpoint[] | null = null
  /** #last came from a ZooKeeper listing (not the snapshot file): its missing instances may be held. */
  #lastFromZk = false
  /** ZooKeeper lists none; the last instances are kept (keepLastOnEmpty). */
  #keptEmpty = false
  /** Served instances ZooKeeper no longer lists (massRemoval). */
  #held = 0
  /** Instance key -> when ZooKeeper stopped listing it (Date.now()), kept for massRemoval.holdMs. */
  readonly #gone = new Map<string, number>()
  #holdTimer: NodeJS.Timeout | undefined
  #fromSnapshot = false

  readonly #onChildren: Watcher
  readonly #onData: Watcher

  constructor(opts: ServiceWatcherOptions) {
    this.#o = opts
    this.#onChildren = opts.watchers?.children ?? (() => this.refresh())
    this.#onData = opts.watchers?.data ?? ((event) => this.dataChanged(event))
    this.#log = opts.logger.child({ service: opts.name, path: opts.path })
  }

  /** Hands over the snapshot-file instances (asynchronously, like every snapshot). */
  start(): void {
    const admit = this.#o.admit
    const initial = admit === undefined ? this.#o.initial : this.#o.initial?.filter((e) => admit(e) === null)
    if (initial === undefined || initial.length === 0 || this.#synced) return
    this.#fromSnapshot = true
    setImmediate(() => {
      if (this.#closed || this.#synced || this.#last !== null) return
      this.#last = Object.freeze([...initial])
      this.#log.info({ instances: initial.length }, 'serving instances from the snapshot file until zookeeper answers')
      this.#o.onSnapshot(this.#last)
    })
  }

  get synced(): boolean {
    return this.#synced
  }

  status(): ServiceWatcherStatus {
    const skipped: { name: string; reason: string }[] = []
    let instances = 0
    for (const [name, v] of this.#children) {
      if ('skipped' in v) skipped.push({ name, reason: v.skipped })
      else instances++
    }
    return {
      synced: this.#synced,
      pathExists: this.#pathExists,
      lastSyncAt: this.#lastSyncAt,
      instances,
      skipped,
      warnings: [...this.#clamped].map(([name, reason]) => ({ name, reason })),
      keptLast: this.#keptEmpty || this.#held > 0,
      held: this.#keptEmpty ? (this.#last?.length ?? 0) : this.#held,
      fromSnapshot: this.#fromSnapshot,
    }
  }

  /** A data watch on one instance fired: read that one again with the next listing. */
  dataChanged(event: Parameters<Watcher>[0]): void {
    this.#dirty.add(path.basename(event.getPath()))
    this.refresh()
  }

  /** A new session: every watch is gone with the old one, so read every child again. */
  resync(): void {
    this.#fullReread = true
    this.refresh()
  }

  /** Reconnected to the same session: watches survived; only redo what failed. */
  retryFailed(): void {
    if (this.#failed) this.refresh()
  }

  /** Lists the children (again), reading the data of new and dirty ones. */
  refresh(): void {
    if (this.#closed) return
    if (this.#listing) {
      this.#relist = true
      return
    }
    clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    void this.#list()
  }

  async #list(): Promise<void> {
    this.#listing = true
    const full = this.#fullReread
    this.#fullReread = false
    this.#relist = false
    const dirty = [...this.#dirty]
    this.#dirty.clear()
    try {
      const names = await this.#o.session.getChildren(this.#o.path, this.#onChildren)
      if (this.#closed) return
      if (names === null) {
        // No such path yet: an empty service that starts working when the path appears.
        this.#pathExists = false
        this.#listed = new Set()
        const appeared = await this.#o.session.exists(this.#o.path, this.#onChildren)
        if (appeared) this.#relist = true
        this.#children.clear()
        this.#clamped.clear()
      } else {
        this.#pathExists = true
        this.#listed = new Set(names)
        for (const name of this.#children.keys()) if (!this.#listed.has(name)) this.#children.delete(name)
        for (const name of this.#clamped.keys()) if (!this.#listed.has(name)) this.#clamped.delete(name)
        const wanted = new Set(dirty)
        const toRead = names.filter((n) => full || wanted.has(n) || !this.#children.has(n))
        await Promise.all(toRead.map((n) => this.#read(n)))
      }
      if (this.#closed) return
      const first = !this.#synced
      if (first) this.#log.info({ instances: this.#countUp() }, 'service first read done')
      this.#synced = true
      this.#fromSnapshot = false
      this.#failed = false
      this.#lastSyncAt = Date.now()
      this.#retryDelayMs = RETRY_MIN_MS
      this.#scheduleEmit()
      // Queued after the emit's setImmediate, so it runs once the list was handed over.
      const onFirstRead = this.#o.onFirstRead
      if (first && onFirstRead !== undefined) setImmediate(() => {
          if (!this.#closed) onFirstRead()
        })
    } catch (err) {
      if (this.#closed) return
      // Keep what we had; put back what this pass owed, and try again later.
      if (full) this.#fullReread = true
      for (const n of dirty) this.#dirty.add(n)
      this.#failed = true
      this.#log.warn({ err: String(err), retryInMs: this.#retryDelayMs }, 'reading service from zookeeper failed, keeping the last known instances')
      this.#scheduleRetry()
    } finally {
      this.#listing = false
      if (this.#relist && !this.#closed && !this.#failed) this.refresh()
    }
  }

  async #read(name: string): Promise<void> {
    const key = `${this.#o.path === '/' ? '' : this.#o.path}/${name}`
    const data = await this.#o.session.getData(key, this.#onData)
    if (this.#closed || !this.#listed.has(name)) return
    if (data === null) {
      // Vanished between listing and reading: simply gone (the children watch fires too).
      this.#children.delete(name)
      this.#clamped.delete(name)
      return
    }
    const decoded = decodeInstance(key, name, data)
    const refused = decoded.ok ? (this.#o.admit?.(decoded.endpoint) ?? null) : null
    this.#clamped.delete(name)
    if (decoded.ok && refused === null) {
      this.#children.set(name, decoded.endpoint)
      if (decoded.warning === undefined) this.#warned.delete(name)
      else {
        this.#clamped.set(name, decoded.warning)
        this.#warnOnce(name, key, data, decoded.warning, 'instance znode has a value out of range; kept with it clamped')
      }
      return
    }
    const reason = decoded.ok ? refused! : decoded.reason
    this.#children.set(name, { skipped: reason })
    this.#warnOnce(name, key, data, reason, decoded.ok ? 'skipping instance znode' : 'skipping malformed instance znode')
  }

  /** One warning per child and data, not one per read. */
  #warnOnce(name: string, key: string, data: Buffer, reason: string, msg: string): void {
    const text = data.toString('utf8').slice(0, 200)
    if (this.#warned.get(name) === text) return
    this.#warned.set(name, text)
    this.#log.warn({ znode: key, reason, data: text }, msg)
  }

  #scheduleRetry(): void {
    if (this.#retryTimer !== undefined) return
    // Jittered exponential backoff, so a fleet of proxies does not re-read in step.
    const delay = Math.round(this.#retryDelayMs * (0.5 + (this.#o.random ?? Math.random)()))
    this.#retryDelayMs = Math.min(RETRY_MAX_MS, this.#retryDelayMs * 2)
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.refresh()
    }, delay)
    this.#retryTimer.unref()
  }

  #countUp(): number {
    let n = 0
    for (const v of this.#children.values()) if (!('skipped' in v)) n++
    return n
  }

  #scheduleEmit(): void {
    if (this.#emitScheduled) return
    this.#emitScheduled = true
    setImmediate(() => {
      this.#emitScheduled = false
      if (this.#closed) return
      const next: Endpoint[] = []
      for (const v of this.#children.values()) if (!('skipped' in v)) next.push(v)
      next.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      const last = this.#last
      if (next.length === 0 && last !== null && last.length > 0 && (this.#o.keepLastOnEmpty ?? true)) {
        if (!this.#keptEmpty) {
          this.#keptEmpty = true
          this.#log.warn({ kept: last.length }, 'zookeeper lists no instance; keeping the last known ones (keepLastOnEmpty), marked stale')
        }
        return
      }
      const served = this.#withHeld(next, last)
      if (this.#keptEmpty) {
        this.#keptEmpty = false
        this.#log.info({ instances: next.length }, 'zookeeper lists instances again; no longer stale')
      }
      this.#lastFromZk = true
      if (last !== null && last.length === served.length && last.every((e, i) => endpointsEqual(e, served[i]!))) return
      this.#last = Object.freeze(served)
      this.#log.info(
        { from: last?.length ?? 0, to: served.length, held: this.#held, instances: next.map((e) => `${joinHostPort(e.host, e.port)}${e.state === 'up' ? '' : ` (${e.state})`}`) },
        `service instances ${last?.length ?? 0} -> ${served.length}`,
      )
      this.#o.onSnapshot(this.#last)
    })
  }

  /**
   * The listed instances plus, during a mass removal (MassRemovalOptions), the served ones that
   * went missing less than holdMs ago; sorted by key. Arms a timer for when the oldest of those
   * is due, so that the removal is honoured then even if ZooKeeper says nothing more: a fresh
   * listing, not the one in hand, so that it is honoured only once ZooKeeper confirms it.
   */
  #withHeld(listed: readonly Endpoint[], last: readonly Endpoint[] | null): Endpoint[] {
    const o = this.#o.massRemoval
    const wasHeld = this.#held
    this.#held = 0
    clearTimeout(this.#holdTimer)
    // An empty listing is keepLastOnEmpty's to decide (here only when it is off: empty it is).
    if (o === undefined || o.minKeepPercent <= 0 || last === null || !this.#lastFromZk || listed.length === 0) {
      this.#gone.clear()
      return [...listed]
    }
    const now = Date.now()
    const listedKeys = new Set(listed.map((e) => e.key))
    const servedKeys = new Set(last.map((e) => e.key))
    // Forget what is listed again, and what went missing long ago and is no longer served.
    for (const [key, at] of this.#gone) if (listedKeys.has(key) || (now - at >= o.holdMs && !servedKeys.has(key))) this.#gone.delete(key)
    for (const e of last) {
      if (listedKeys.has(e.key)) continue
      // Kept through an empty listing (keepLastOnEmpty): they count as missing from the moment
      // ZooKeeper lists instances again, so the first instances back do not take all the traffic.
      if (this.#keptEmpty || !this.#gone.has(e.key)) this.#gone.set(e.key, now)
    }
    let recent = 0
    let due = Infinity
    for (const at of this.#gone.values()) {
      if (now - at >= o.holdMs) continue
      recent++
      due = Math.min(due, at + o.holdMs)
    }
    // Marked, so that the balancer drops one at its first refused connection (balancer.settle).
    const held = last
      .filter((e) => !listedKeys.has(e.key) && now - this.#gone.get(e.key)! < o.holdMs)
      .map((e) => (e.meta.held === true ? e : Object.freeze({ ...e, meta: Object.freeze({ ...e.meta, held: true }) })))
    if (held.length === 0 || listed.length * 100 >= o.minKeepPercent * (listed.length + recent)) {
      if (wasHeld > 0) this.#log.info({ instances: listed.length }, `mass removal over: serving the ${listed.length} instances zookeeper lists`)
      return [...listed]
    }
    this.#held = held.length
    if (wasHeld === 0) {
      this.#log.warn(
        { listed: listed.length, held: held.length, minKeepPercent: o.minKeepPercent, holdMs: o.holdMs },
        `zookeeper lists ${listed.length} of the ${listed.length + recent} instances seen within holdMs; keeping the ${held.length} missing ones for up to holdMs (massRemoval), marked stale`,
      )
    }
    this.#holdTimer = setTimeout(() => this.refresh(), Math.max(0, due - now))
    this.#holdTimer.unref()
    return [...listed, ...held].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  close(): void {
    this.#closed = true
    clearTimeout(this.#retryTimer)
    clearTimeout(this.#holdTimer)
  }
}
