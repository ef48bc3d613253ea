// A proxy's side of the fleet (docs/fleet.md): watch `active`, read the table meant for this
// proxy, check it as `zoo-proxy check` would and against the live instances, switch to it through
// the hot-reload transaction, and say what happened in the ephemeral `proxies/<id>` node. A table
// refused anywhere leaves the running one serving. Nothing read here is trusted (layout.ts bounds
// it), and nothing thrown here reaches the session's watcher: every pass ends in a log line.

import { mkdirSync, readFileSync } from 'node:fs'
import { rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import process from 'node:process'
import zookeeper from 'node-zookeeper-client'
import type { Config } from '../config.js'
import { ConfigError } from '../errors.js'
import type { Endpoint } from '../discovery/endpoint.js'
import { isNodeExists, isNoNode } from '../discovery/zk-session.js'
import type { ZkSession } from '../discovery/zk-session.js'
import type { Logger } from '../log.js'
import { FleetDataError, MAX_NODE_BYTES, TABLE_NAME, encodeProxyStatus, fleetPaths, parseActive, parseTable, tableFor } from './layout.js'
import type { FleetPaths } from './layout.js'

/** Checks the instances a reload is about to route to: problems, empty when it may go on. */
export type LiveCheck = (endpointsOf: (service: string) => readonly Endpoint[] | undefined) => string[]

export interface FleetFollowerOptions {
  readonly session: ZkSession
  readonly root: string
  readonly id: string
  readonly allowOpenAcl: boolean
  readonly logger: Logger
  /** The config this process would run with a table's services (tableConfig): a ConfigError when they fail check. */
  readonly build: (services: readonly unknown[]) => Promise<Config>
  /** The hot reload, as a transaction; `check` runs once the instances are read, before the switch. */
  readonly apply: (next: Config, check: LiveCheck) => Promise<unknown>
  /** Where the last applied table is kept (beside the snapshot file), if anywhere. */
  readonly saveFile?: string
  /** The table this process already serves (read back from saveFile at start). */
  readonly applied?: string
}

/** What the save file holds: enough to serve the table again with ZooKeeper out of reach. */
interface Saved {
  readonly version: 1
  readonly fleet: string
  readonly table: string
  readonly services: readonly unknown[]
}

/** The last table this process applied for fleet `root`, or null (missing, unreadable, another fleet's). */
export function readSavedTable(file: string, root: string, logger: Logger): { table: string; services: readonly unknown[] } | null {
  try {
    const text = readFileSync(file)
    if (text.length > MAX_NODE_BYTES * 2) throw new Error(`more than ${MAX_NODE_BYTES * 2} bytes`)
    const s = JSON.parse(text.toString('utf8')) as Partial<Saved>
    if (s.fleet !== root || typeof s.table !== 'string' || !TABLE_NAME.test(s.table) || !Array.isArray(s.services)) throw new Error('not a saved table of this fleet')
    return { table: s.table, services: s.services }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') logger.warn({ file, err: String(err) }, 'ignoring the saved fleet table')
    return null
  }
}

/** The file the last applied table is kept in, beside `snapshotFile`. */
export function savedTableFile(snapshotFile: string): string {
  return `${snapshotFile}.fleet-table.json`
}

function worldWritable(acls: readonly zookeeper.ACL[]): boolean {
  // The library's types call the field perms; it is permission (lib/ACL.js).
  return acls.some((a) => a.id.scheme === 'world' && a.id.id === 'anyone' && ((a as unknown as { permission: number }).permission & zookeeper.Permission.WRITE) !== 0)
}

/** First wait before a table refused for a passing reason (a warm-up timeout) is tried again; doubles up to the most. */
const RETRY_FIRST_MS = 1000
const RETRY_MOST_MS = 30_000

export class FleetFollower {
  readonly #o: FleetFollowerOptions
  readonly #paths: FleetPaths
  readonly #log: Logger
  readonly #startedAt = Date.now()
  #applied: string | null
  #role: 'active' | 'canary' = 'active'
  #rejected: { table: string; problems: string[] } | null = null
  /** The refusal was of the moment (a timeout): the same table is tried again on the next event. */
  #retryable = false
  /** The last status write failed: logged once until one succeeds. */
  #statusFailing = false
  #rejections = 0
  /** Tries a retryable refusal again: nothing else would (no event comes while `active` stays). */
  #retryTimer: NodeJS.Timeout | undefined
  #retryMs = RETRY_FIRST_MS
  #running = false
  #again = false
  #closed = false
  #freshSession = true
  #unsubscribe: (() => void) | undefined
  /** One stable watch function (the client library tells watchers apart by identity). */
  readonly #watch = () => this.#kick()
  /** Resolves when a pass ends; tests and start-up wait on it. */
  #idle: Promise<void> = Promise.resolve()

  constructor(opts: FleetFollowerOptions) {
    this.#o = opts
    this.#paths = fleetPaths(opts.root)
    this.#log = opts.logger.child({ component: 'fleet' })
    this.#applied = opts.applied ?? null
  }

  /** The table served and its role, or null before the first one. */
  serving(): { table: string; role: 'active' | 'canary' } | null {
    return this.#applied === null ? null : { table: this.#applied, role: this.#role }
  }

  get rejections(): number {
    return this.#rejections
  }

  start(): void {
    if (this.#unsubscribe !== undefined || this.#closed) return
    this.#unsubscribe = this.#o.session.subscribe({
      onSession: () => {
        // A new session: the old ephemeral node goes with the old one (or lingers until it expires).
        this.#freshSession = true
        this.#kick()
      },
      onReconnect: () => this.#kick(),
    })
  }

  close(): void {
    this.#closed = true
    clearTimeout(this.#retryTimer)
    this.#unsubscribe?.()
  }

  /** One pass at a time; a kick during a pass runs one more after it. */
  #kick(): void {
    if (this.#closed) return
    if (this.#running) {
      this.#again = true
      return
    }
    this.#running = true
    this.#idle = (async () => {
      do {
        this.#again = false
        try {
          await this.#pass()
        } catch (err) {
          // A failed read (connection loss, timeout): the next session event or watch tries again.
          this.#log.warn({ err: String((err as Error)?.message ?? err) }, 'fleet: could not read the table; the current one stays')
        }
      } while (this.#again && !this.#closed)
      this.#running = false
    })()
  }

  async #pass(): Promise<void> {
    const { session } = this.#o
    const acls = await session.getACL(this.#paths.active)
    if (acls === null) {
      // No table pushed yet: wait for `active` to appear.
      if (await session.exists(this.#paths.active, this.#watch)) this.#again = true
      await this.#writeStatus()
      return
    }
    const got = await session.getDataStat(this.#paths.active, this.#watch)
    if (got === null) {
      this.#again = true
      return
    }
    if (worldWritable(acls) && !this.#o.allowOpenAcl) {
      this.#log.error({ path: this.#paths.active }, 'fleet: the active node is writable by anyone; not following it (push with --auth, or set fleet.allowOpenAcl: true)')
      await this.#reject('(active)', [`${this.#paths.active}: writable by the world (ACL world:anyone has write); push with --auth, or set fleet.allowOpenAcl: true`])
      return
    }
    let meant: { table: string; role: 'active' | 'canary' }
    try {
      meant = tableFor(parseActive(got.data), this.#o.id)
    } catch (err) {
      if (!(err instanceof FleetDataError)) throw err
      await this.#reject('(active)', [...err.problems])
      return
    }
    if (meant.table === this.#applied) {
      this.#role = meant.role
      if (this.#rejected?.table === '(active)') this.#rejected = null
      await this.#writeStatus()
      return
    }
    if (this.#rejected?.table === meant.table && !this.#retryable) {
      await this.#writeStatus()
      return
    }
    const node = await session.getDataStat(this.#paths.table(meant.table))
    if (node === null) {
      await this.#reject(meant.table, [`active: names ${meant.table}, which does not exist under ${this.#paths.tables}`])
      return
    }
    let next: Config
    let allowEmpty: Set<string>
    let services: readonly unknown[]
    try {
      services = parseTable(node.data, meant.table).services
      next = await this.#o.build(services)
      allowEmpty = new Set(next.services.filter((s) => s.allowEmpty === true).map((s) => s.name))
      await this.#o.apply(next, (endpointsOf) => {
        const problems: string[] = []
        next.services.forEach((s, i) => {
          if (allowEmpty.has(s.name)) return
          const up = (endpointsOf(s.name) ?? []).filter((e) => e.state === 'up').length
          if (up === 0) problems.push(`services[${i}] (${s.name}): no routable instance at ${s.path} (mark the service allowEmpty: true to take it anyway)`)
        })
        return problems
      })
    } catch (err) {
      if (err instanceof FleetDataError || err instanceof ConfigError) {
        await this.#reject(meant.table, [...err.problems])
        return
      }
      const code = (err as { code?: unknown }).code
      if (code === 'ZP_ERR_SHUTTING_DOWN' || code === 'ZP_ERR_CLOSED' || this.#closed) return
      await this.#reject(meant.table, [`(reload): ${String((err as Error)?.message ?? err)}`], true)
      return
    }
    const was = this.#applied
    this.#applied = meant.table
    this.#role = meant.role
    this.#rejected = null
    this.#retryable = false
    this.#retryMs = RETRY_FIRST_MS
    this.#log.info({ from: was, to: meant.table, role: meant.role }, `fleet table ${was ?? '(none)'} -> ${meant.table}`)
    await this.#save(meant.table, services)
    await this.#writeStatus()
  }

  async #reject(table: string, problems: string[], retryable = false): Promise<void> {
    const first = this.#rejected?.table !== table
    this.#rejected = { table, problems }
    this.#retryable = retryable
    if (first) {
      this.#rejections++
      this.#log.warn({ table, problems, serving: this.#applied }, `fleet table ${table} refused; ${this.#applied ?? 'no table'} stays`)
    }
    if (retryable && !this.#closed && this.#retryTimer === undefined) {
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined
        this.#kick()
      }, this.#retryMs)
      this.#retryTimer.unref()
      this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MOST_MS)
    }
    await this.#writeStatus()
  }

  /**
   * proxies/<id>: ephemeral, so it lists exactly the proxies that are up. A failure is logged (once
   * until a write succeeds) and never undoes what was applied; the next pass writes again.
   */
  async #writeStatus(): Promise<void> {
    if (this.#closed) return
    try {
      await this.#putStatus()
      this.#statusFailing = false
    } catch (err) {
      if (!this.#statusFailing) {
        this.#log.error({ path: this.#paths.proxy(this.#o.id), err: String((err as Error)?.message ?? err) }, 'fleet: cannot write this proxy\'s status node (does zookeeper.auth hold the fleet\'s credential?)')
      }
      this.#statusFailing = true
      this.#freshSession = true
    }
  }

  async #putStatus(): Promise<void> {
    const { session } = this.#o
    const at = this.#paths.proxy(this.#o.id)
    const body = encodeProxyStatus({ applied: this.#applied, rejected: this.#rejected, startedAt: this.#startedAt })
    if (this.#freshSession) {
      // A node left by this proxy's previous session would vanish when that session expires.
      // ZooKeeper checks the parent's ACL before the node: a proxy without the push credential may
      // create under proxies/ but not delete there, so it asks first and, when it cannot delete
      // an old node, writes into it (it goes with the old session; the next pass writes again).
      if (await session.exists(at)) await session.remove(at).catch(() => {})
      this.#freshSession = false
    }
    try {
      await session.setData(at, body)
      return
    } catch (err) {
      if (!isNoNode(err)) throw err
    }
    await session.ensureParents(at)
    try {
      await session.create(at, body, 'ephemeral')
    } catch (err) {
      if (!isNodeExists(err)) throw err
      await session.setData(at, body)
    }
  }

  async #save(table: string, services: readonly unknown[]): Promise<void> {
    const file = this.#o.saveFile
    if (file === undefined) return
    const body: Saved = { version: 1, fleet: this.#o.root, table, services }
    const tmp = `${file}.${process.pid}.tmp`
    try {
      mkdirSync(path.dirname(file), { recursive: true })
      await writeFile(tmp, JSON.stringify(body))
      await rename(tmp, file)
    } catch (err) {
      this.#log.warn({ file, err: String(err) }, 'fleet: could not save the applied table')
    }
  }

  /** Resolves once no pass is running (tests, and close). */
  async settled(): Promise<void> {
    while (this.#running) await this.#idle
  }
}
