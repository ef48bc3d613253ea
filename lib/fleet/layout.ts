// The fleet's znodes under its path (docs/fleet.md), and the codecs of what they hold. Every
// byte read from ZooKeeper is hostile: sizes, counts, names and numbers are bounded here, where
// they enter, and a node that breaks a bound is refused as a whole, with the field named.

import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import { strictUtf8 } from '../utf8.js'

/** Largest table, `active` or status node read (ZooKeeper's own jute.maxbuffer default is 1 MiB too). */
export const MAX_NODE_BYTES = 1024 * 1024
/** A table's name: what ZooKeeper appends to `t-` for a sequential node (10 digits). */
export const TABLE_NAME = /^t-\d{10}$/
/** A proxy id, as the config's `fleet.id` allows it (a znode name). */
export const PROXY_ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/
/**
 * The id a proxy takes when `fleet.id` is not given: host name and listen port, as `host:8080`.
 * With `listen.port: 0` the port says nothing (every such proxy on a host would share `host:0`
 * and overwrite each other's status node), so the process id stands in for it. Characters a
 * host name may carry outside PROXY_ID become `-`, and the result always matches PROXY_ID.
 */
export function defaultProxyId(hostname: string, port: number, pid: number): string {
  const host = hostname.replace(/[^A-Za-z0-9._@-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 100) || 'proxy'
  return `${host}:${port === 0 ? `pid${pid}` : port}`
}

/** Most proxies a canary may name. */
export const MAX_CANARY_PROXIES = 10_000
/** Longest message and author kept with a table. */
export const MAX_MESSAGE_CHARS = 4096
export const MAX_AUTHOR_CHARS = 256
/** Most problems a status node lists (each cut to MAX_PROBLEM_CHARS). */
export const MAX_PROBLEMS = 50
export const MAX_PROBLEM_CHARS = 500

export interface FleetPaths {
  readonly root: string
  readonly tables: string
  readonly active: string
  readonly proxies: string
  table(name: string): string
  proxy(id: string): string
}

export function fleetPaths(root: string): FleetPaths {
  return {
    root,
    tables: `${root}/tables`,
    active: `${root}/active`,
    proxies: `${root}/proxies`,
    table: (name) => `${root}/tables/${name}`,
    proxy: (id) => `${root}/proxies/${id}`,
  }
}

/** A malformed fleet node: `problems` are `field: why` lines. */
export class FleetDataError extends Error {
  readonly code = 'ZP_ERR_FLEET_DATA'
  readonly problems: readonly string[]
  constructor(problems: readonly string[]) {
    super(problems.join('; '))
    this.problems = problems
  }
}

export interface Canary {
  readonly table: string
  readonly proxies?: readonly string[]
  /** 0..100: the proxies whose id hashes below it (see inPercent). */
  readonly percent?: number
}

export interface Active {
  readonly table: string
  readonly canary?: Canary
}

export interface Table {
  /** The `services` list as the config file had it; validated by whoever applies it. */
  readonly services: readonly unknown[]
  readonly message: string
  readonly author: string
  readonly parent: string | null
}

export interface ProxyStatus {
  readonly applied: string | null
  readonly rejected: { readonly table: string; readonly problems: readonly string[] } | null
  readonly startedAt: number
}

function json(data: Buffer, what: string): Record<string, unknown> {
  if (data.length > MAX_NODE_BYTES) throw new FleetDataError([`${what}: ${data.length} bytes, more than ${MAX_NODE_BYTES}`])
  let v: unknown
  try {
    v = JSON.parse(strictUtf8(data))
  } catch (err) {
    throw new FleetDataError([`${what}: not JSON (${(err as Error).message})`])
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new FleetDataError([`${what}: must be a JSON object`])
  return v as Record<string, unknown>
}

function tableName(v: unknown, field: string, problems: string[]): string {
  if (typeof v === 'string' && TABLE_NAME.test(v)) return v
  problems.push(`${field}: must be a table name like t-0000000042`)
  return ''
}

export function parseActive(data: Buffer): Active {
  const o = json(data, 'active')
  const problems: string[] = []
  const table = tableName(o.table, 'active.table', problems)
  let canary: Canary | undefined
  if (o.canary !== undefined && o.canary !== null) {
    const c = o.canary as Record<string, unknown>
    if (typeof c !== 'object' || Array.isArray(c)) problems.push('active.canary: must be an object')
    else {
      const ct = tableName(c.table, 'active.canary.table', problems)
      const hasProxies = c.proxies !== undefined
      const hasPercent = c.percent !== undefined
      if (hasProxies === hasPercent) problems.push('active.canary: give proxies or percent (one of them)')
      if (hasProxies) {
        if (!Array.isArray(c.proxies) || c.proxies.length > MAX_CANARY_PROXIES || !c.proxies.every((p) => typeof p === 'string' && PROXY_ID.test(p))) {
          problems.push(`active.canary.proxies: must be at most ${MAX_CANARY_PROXIES} proxy ids`)
        } else canary = { table: ct, proxies: c.proxies as string[] }
      }
      if (hasPercent) {
        if (typeof c.percent !== 'number' || !Number.isFinite(c.percent) || c.percent < 0 || c.percent > 100) problems.push('active.canary.percent: must be a number 0..100')
        else canary = { table: ct, percent: c.percent }
      }
    }
  }
  if (problems.length > 0) throw new FleetDataError(problems)
  return canary === undefined ? { table } : { table, canary }
}

export function parseTable(data: Buffer, name: string): Table {
  const o = json(data, name)
  const problems: string[] = []
  if (!Array.isArray(o.services)) problems.push(`${name}.services: must be a list`)
  const text = (v: unknown, field: string, max: number): string => {
    if (v === undefined || v === null) return ''
    if (typeof v === 'string' && v.length <= max) return v
    problems.push(`${name}.${field}: must be a string of at most ${max} characters`)
    return ''
  }
  const message = text(o.message, 'message', MAX_MESSAGE_CHARS)
  const author = text(o.author, 'author', MAX_AUTHOR_CHARS)
  const parent = o.parent === null || o.parent === undefined ? null : tableName(o.parent, `${name}.parent`, problems)
  if (problems.length > 0) throw new FleetDataError(problems)
  return { services: o.services as unknown[], message, author, parent }
}

export function parseProxyStatus(data: Buffer): ProxyStatus {
  const o = json(data, 'status')
  const applied = typeof o.applied === 'string' && TABLE_NAME.test(o.applied) ? o.applied : null
  const r = o.rejected as { table?: unknown; problems?: unknown } | null | undefined
  const rejected =
    r !== null && typeof r === 'object' && typeof r.table === 'string' && Array.isArray(r.problems)
      ? { table: r.table.slice(0, 64), problems: r.problems.slice(0, MAX_PROBLEMS).map((p) => String(p).slice(0, MAX_PROBLEM_CHARS)) }
      : null
  const startedAt = typeof o.startedAt === 'number' && Number.isFinite(o.startedAt) ? o.startedAt : 0
  return { applied, rejected, startedAt }
}

export function encodeProxyStatus(s: ProxyStatus): Buffer {
  const rejected = s.rejected === null ? null : { table: s.rejected.table, problems: s.rejected.problems.slice(0, MAX_PROBLEMS).map((p) => p.slice(0, MAX_PROBLEM_CHARS)) }
  return Buffer.from(JSON.stringify({ applied: s.applied, rejected, startedAt: s.startedAt }))
}

/**
 * Whether a proxy is in a canary of `percent` %: the first 32 bits of SHA-256 of its id, as a
 * fraction of 2^32, below percent/100. Stable across restarts and the same in every process (and
 * in `fleet status`), and raising the percent only adds proxies.
 */
export function inPercent(id: string, percent: number): boolean {
  const h = createHash('sha256').update(id).digest().readUInt32BE(0)
  return h / 2 ** 32 < percent / 100
}

/** The table meant for proxy `id`, and whether that is as the active table or the canary. */
export function tableFor(active: Active, id: string): { readonly table: string; readonly role: 'active' | 'canary' } {
  const c = active.canary
  if (c !== undefined && (c.proxies !== undefined ? c.proxies.includes(id) : inPercent(id, c.percent ?? 0))) return { table: c.table, role: 'canary' }
  return { table: active.table, role: 'active' }
}
