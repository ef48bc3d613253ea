// `zoo-proxy fleet <verb>` (docs/fleet.md): push, status, promote, rollback, history, diff.
// Exit codes: 0 done (status: every live proxy applied its table), 1 failed at run time (status:
// not converged), 2 bad arguments or a table that fails check (nothing written), 3 lost a race
// to another writer (nothing written; the winner is named).

import { Buffer } from 'node:buffer'
import os from 'node:os'
import process from 'node:process'
import { ZK_CREDENTIALS_ENV, loadConfig, parseYamlLinear, readConfigText } from './config.js'
import { ConfigError } from './errors.js'
import { REGISTRY_FOLDER_ACL, isBadVersion, isNodeExists, ZkSession } from './discovery/zk-session.js'
import type { MultiOp } from './discovery/zk-session.js'
import { silentLogger } from './log.js'
import { FleetDataError, MAX_CANARY_PROXIES, MAX_NODE_BYTES, PROXY_ID, TABLE_NAME, fleetPaths, parseActive, parseProxyStatus, parseTable, tableFor } from './fleet/layout.js'
import type { Active, FleetPaths } from './fleet/layout.js'

export class FleetUsageError extends Error {}

/** Exit status of a push or a change to `active` that another writer beat. */
export const EXIT_LOST_RACE = 3

type Values = Record<string, string | boolean | undefined>

export interface Io {
  out(line: string): void
  err(line: string): void
  /** Runs between reading `active` and the multi of a push (tests line two pushers up there). */
  beforeCommit?(): Promise<void>
}

const consoleIo: Io = { out: (l) => console.log(l), err: (l) => console.error(l) }

function str(v: Values, k: string): string | undefined {
  return typeof v[k] === 'string' ? (v[k] as string) : undefined
}

function need(v: Values, k: string): string {
  const s = str(v, k)
  if (s === undefined) throw new FleetUsageError(`--${k} is required`)
  return s
}

function fleetRoot(v: Values): string {
  const p = need(v, 'fleet')
  if (!/^\/[^\0]*[^/]$/.test(p) || p.includes('//')) throw new FleetUsageError('--fleet must be an absolute znode path like /zoo-proxy/fleets/prod')
  return p
}

/** `user:pass` from --auth or the environment, as ZooKeeper's digest scheme takes it. */
function authOf(v: Values): string | undefined {
  return str(v, 'auth') ?? (process.env[ZK_CREDENTIALS_ENV] || undefined)
}

function openSession(v: Values): ZkSession {
  const auth = authOf(v)
  if (auth !== undefined && !/^[^:]+:.+$/.test(auth)) throw new FleetUsageError('--auth must be user:pass')
  const s = new ZkSession({ connect: need(v, 'zookeeper'), sessionTimeoutMs: 10_000, logger: silentLogger, ...(auth === undefined ? {} : { auth: [{ scheme: 'digest', credentials: auth }] }) })
  s.start()
  return s
}

/**
 * Opens a session to the fleet named by --zookeeper/--fleet, runs `fn`, and closes the session
 * however `fn` ends: each verb below is one of these (the flags are checked before connecting).
 */
async function withFleet<T>(v: Values, fn: (s: ZkSession, p: FleetPaths) => Promise<T>): Promise<T> {
  const p = fleetPaths(fleetRoot(v))
  const s = openSession(v)
  try {
    return await fn(s, p)
  } finally {
    s.close()
  }
}

function tableArg(name: string | undefined, what: string): string {
  if (name === undefined || !TABLE_NAME.test(name)) throw new FleetUsageError(`${what} must be a table name like t-0000000042`)
  return name
}

/** `active` with its version, bumped above 0 first when it is at 0 (the client library sends version 0 as "any"). */
async function readActive(s: ZkSession, p: FleetPaths): Promise<{ active: Active; version: number } | null> {
  let got = await s.getDataStat(p.active)
  if (got !== null && got.version === 0) {
    await s.multi([{ op: 'setData', path: p.active, data: got.data, version: -1 }])
    got = await s.getDataStat(p.active)
  }
  if (got === null) return null
  return { active: parseActive(got.data), version: got.version }
}

async function whoWon(s: ZkSession, p: FleetPaths): Promise<string> {
  try {
    const now = await readActive(s, p)
    return now === null ? '(none)' : now.active.canary === undefined ? now.active.table : `${now.active.table} (canary ${now.active.canary.table})`
  } catch {
    return '(unreadable)'
  }
}

/** Sets `active` to `next` if it is still at `version`; exit 0, or 3 naming what won. */
async function setActive(s: ZkSession, p: FleetPaths, next: Active, version: number, io: Io, done: string): Promise<number> {
  try {
    await s.multi([{ op: 'setData', path: p.active, data: Buffer.from(JSON.stringify(next)), version }])
  } catch (err) {
    if (!isBadVersion(err)) throw err
    io.err(`zoo-proxy fleet: active changed meanwhile; it is now ${await whoWon(s, p)}. Nothing written.`)
    return EXIT_LOST_RACE
  }
  io.out(done)
  return 0
}

async function push(v: Values, file: string | undefined, io: Io): Promise<number> {
  if (file === undefined) throw new FleetUsageError('fleet push needs a FILE')
  const root = fleetRoot(v)
  const percentText = str(v, 'canary-percent')
  const proxiesText = str(v, 'canary-proxies')
  if (percentText !== undefined && proxiesText !== undefined) throw new FleetUsageError('give --canary-percent or --canary-proxies, not both')
  let percent: number | undefined
  if (percentText !== undefined) {
    percent = Number(percentText)
    if (!/^\d+(\.\d+)?$/.test(percentText) || percent <= 0 || percent > 100) throw new FleetUsageError(`--canary-percent must be a number in (0, 100], got "${percentText}"`)
  }
  let proxies: string[] | undefined
  if (proxiesText !== undefined) {
    proxies = proxiesText.split(',').filter(Boolean)
    if (proxies.length === 0 || proxies.length > MAX_CANARY_PROXIES || !proxies.every((id) => PROXY_ID.test(id))) throw new FleetUsageError('--canary-proxies must be a list of proxy ids: id,id,...')
  }
  const message = str(v, 'message') ?? ''
  // The same rules as `zoo-proxy check` (exit 2, nothing written when it fails).
  const text = await readConfigText(file)
  await loadConfig(file, text)
  const raw = (file.endsWith('.json') ? JSON.parse(text) : parseYamlLinear(text)) as { services?: unknown[]; fleet?: unknown }
  if (raw.fleet !== undefined) throw new ConfigError([`fleet: ${file} is a fleet member's config; push a file with services`])
  const s = openSession(v)
  try {
    const p = fleetPaths(root)
    await s.ensureParents(`${p.tables}/x`)
    // proxies/: every proxy of the fleet writes its status there, with or without the push
    // credential (docs/fleet.md); with --auth it is the credential's, and the world may add to it.
    await s.ensureParents(p.proxies)
    if (authOf(v) !== undefined) await s.create(p.proxies, Buffer.alloc(0), 'persistent', REGISTRY_FOLDER_ACL).catch((err: unknown) => {
      if (!isNodeExists(err)) throw err
    })
    else await s.ensureParents(`${p.proxies}/x`)
    const current = await readActive(s, p)
    if (current === null && (percent !== undefined || proxies !== undefined)) throw new FleetUsageError('a canary needs an active table to run beside; push one without --canary-* first')
    const tables = await s.getDataStat(p.tables)
    if (tables === null) throw new Error(`${p.tables} vanished`)
    // ZooKeeper numbers a sequential child by its parent's cversion, so the next sequence name is
    // known before the multi and `active` can name it in the same multi. The table is created under
    // that name explicitly, not in sequential mode: a child slipped in between (which would take the
    // number) makes the multi fail whole with NODE_EXISTS, where a sequential create would have
    // taken the next number and committed `active` naming the other writer's table. Later
    // sequential children are numbered above it (cversion counts this create too).
    const name = `t-${String(tables.cversion).padStart(10, '0')}`
    const author = `${os.userInfo().username}@${os.hostname()}`
    const body = Buffer.from(JSON.stringify({ services: raw.services ?? [], message, author, parent: current?.active.table ?? null }))
    if (body.length > MAX_NODE_BYTES) throw new ConfigError([`(file): the table is ${body.length} bytes, more than ${MAX_NODE_BYTES}`])
    const next: Active =
      current === null || (percent === undefined && proxies === undefined)
        ? { table: name }
        : { table: current.active.table, canary: proxies !== undefined ? { table: name, proxies } : { table: name, percent: percent! } }
    const activeData = Buffer.from(JSON.stringify(next))
    const ops: MultiOp[] = [{ op: 'create', path: p.table(name), data: body }]
    if (current === null) {
      // Created and set again in the same multi, so `active` starts at version 1: a version check
      // against 0 would check nothing (the client library sends it as "any").
      ops.push({ op: 'create', path: p.active, data: activeData }, { op: 'setData', path: p.active, data: activeData, version: -1 })
    } else ops.push({ op: 'setData', path: p.active, data: activeData, version: current.version })
    await io.beforeCommit?.()
    try {
      await s.multi(ops)
    } catch (err) {
      if (isBadVersion(err) || isNodeExists(err)) {
        io.err(`zoo-proxy fleet push: another push won; active is now ${await whoWon(s, p)}. Nothing written.`)
        return EXIT_LOST_RACE
      }
      // The connection went (a server lost mid-multi): the multi applied whole or not at all, and
      // once the session is back `active` says which.
      const now = await readActive(s, p).catch(() => null)
      if (now === null || JSON.stringify(now.active) !== JSON.stringify(next)) {
        io.err(`zoo-proxy fleet push: ${String((err as Error)?.message ?? err)}; active is ${now === null ? '(unreadable)' : now.active.table}, the push did not happen`)
        return 1
      }
    }
    io.out(`pushed ${name}${next.canary === undefined ? '' : ` as the canary of ${next.table}`} (parent ${current?.active.table ?? 'none'})`)
    return 0
  } finally {
    s.close()
  }
}

interface Row {
  readonly id: string
  readonly applied: string | null
  readonly meant: string
  readonly rejected: { table: string; problems: readonly string[] } | null
}

async function statusRows(s: ZkSession, p: FleetPaths): Promise<{ active: Active | null; rows: Row[] }> {
  const current = await readActive(s, p)
  const ids = (await s.getChildren(p.proxies)) ?? []
  const rows: Row[] = []
  for (const id of ids.sort()) {
    const node = await s.getDataStat(p.proxy(id))
    if (node === null) continue
    let st
    try {
      st = parseProxyStatus(node.data)
    } catch {
      st = { applied: null, rejected: { table: '(status)', problems: ['unreadable status node'] } }
    }
    rows.push({ id, applied: st.applied, meant: current === null ? '(none)' : tableFor(current.active, id).table, rejected: st.rejected })
  }
  return { active: current?.active ?? null, rows }
}

async function status(v: Values, io: Io): Promise<number> {
  const waitText = str(v, 'wait-ms')
  const waitMs = waitText === undefined ? 0 : Number(waitText)
  if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > 3_600_000) throw new FleetUsageError(`--wait-ms must be an integer 0..3600000, got "${waitText}"`)
  return withFleet(v, async (s, p) => {
    const deadline = Date.now() + waitMs
    for (;;) {
      const { active, rows } = await statusRows(s, p)
      const converged = active !== null && rows.length > 0 && rows.every((r) => r.applied === r.meant)
      if (converged || Date.now() >= deadline) {
        io.out(active === null ? 'active: (none)' : `active: ${active.table}${active.canary === undefined ? '' : `, canary ${active.canary.table} (${active.canary.proxies !== undefined ? active.canary.proxies.join(',') : `${active.canary.percent}%`})`}`)
        for (const r of rows) {
          const state = r.applied === r.meant ? 'ok' : 'PENDING'
          const rejected = r.rejected === null ? '' : ` rejected ${r.rejected.table}: ${r.rejected.problems.join('; ')}`
          io.out(`${r.id} applied ${r.applied ?? '(none)'} meant ${r.meant} ${state}${rejected}`)
        }
        if (rows.length === 0) io.out('(no live proxy)')
        return converged ? 0 : 1
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  })
}

async function promote(v: Values, io: Io): Promise<number> {
  return withFleet(v, async (s, p) => {
    const current = await readActive(s, p)
    if (current?.active.canary === undefined) {
      io.err('zoo-proxy fleet promote: there is no canary to promote')
      return 1
    }
    const table = current.active.canary.table
    return await setActive(s, p, { table }, current.version, io, `promoted ${table} (was ${current.active.table})`)
  })
}

async function rollback(v: Values, io: Io): Promise<number> {
  const to = str(v, 'to') === undefined ? undefined : tableArg(str(v, 'to'), '--to')
  return withFleet(v, async (s, p) => {
    const current = await readActive(s, p)
    if (current === null) {
      io.err('zoo-proxy fleet rollback: no active table')
      return 1
    }
    let target = to
    if (target === undefined) {
      const node = await s.getDataStat(p.table(current.active.table))
      const parent = node === null ? null : parseTable(node.data, current.active.table).parent
      if (parent === null) {
        io.err(`zoo-proxy fleet rollback: ${current.active.table} has no parent; give --to t-N`)
        return 1
      }
      target = parent
    }
    // A parent is only a name a table carries: the table it names may never have been written.
    if ((await s.getDataStat(p.table(target))) === null) {
      io.err(`zoo-proxy fleet rollback: ${target} does not exist`)
      return 1
    }
    return await setActive(s, p, { table: target }, current.version, io, `rolled back to ${target} (was ${current.active.table})`)
  })
}

/** `fleet history` reads one node per table it prints: the newest 100 unless --limit says otherwise. */
const HISTORY_DEFAULT = 100
const HISTORY_MAX = 100_000

async function history(v: Values, io: Io): Promise<number> {
  const limitText = str(v, 'limit')
  const limit = limitText === undefined ? HISTORY_DEFAULT : Number(limitText)
  if (!Number.isInteger(limit) || limit < 1 || limit > HISTORY_MAX) throw new FleetUsageError(`--limit must be an integer 1..${HISTORY_MAX}, got "${limitText}"`)
  return withFleet(v, async (s, p) => {
    const current = await readActive(s, p).catch(() => null)
    const all = ((await s.getChildren(p.tables)) ?? []).filter((n) => TABLE_NAME.test(n)).sort()
    if (all.length > limit) io.out(`(${all.length - limit} older tables not shown; --limit ${all.length} shows them)`)
    const names = all.slice(-limit)
    for (const name of names) {
      const node = await s.getDataStat(p.table(name))
      if (node === null) continue
      let line: string
      try {
        const t = parseTable(node.data, name)
        line = `${name} ${new Date(node.ctimeMs).toISOString()} ${t.author} parent ${t.parent ?? 'none'}: ${t.message}`
      } catch (err) {
        line = `${name} (unreadable: ${(err as Error).message})`
      }
      const marks = [current?.active.table === name ? 'active' : '', current?.active.canary?.table === name ? 'canary' : ''].filter(Boolean)
      io.out(marks.length > 0 ? `${line} [${marks.join(', ')}]` : line)
    }
    return 0
  })
}

/**
 * How deep a diff descends before it prints the rest as one value. Each level serialises what is
 * below it, so a hostile table nested thousands deep over a large value would cost depth x size.
 */
const MAX_DIFF_DEPTH = 32

/** Every leaf that differs between two JSON values, as `path: old -> new`. */
function leafDiff(a: unknown, b: unknown, at: string, out: string[], depth = 0): void {
  if (JSON.stringify(a) === JSON.stringify(b)) return
  const isObj = (x: unknown) => x !== null && typeof x === 'object'
  if (depth < MAX_DIFF_DEPTH && isObj(a) && isObj(b) && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)])
    for (const k of keys) leafDiff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], Array.isArray(a) ? `${at}[${k}]` : `${at}.${k}`, out, depth + 1)
    return
  }
  out.push(`${at}: ${a === undefined ? '(absent)' : JSON.stringify(a)} -> ${b === undefined ? '(absent)' : JSON.stringify(b)}`)
}

/** Services by name: added, removed, and the fields that changed in the others. */
export function diffTables(a: readonly unknown[], b: readonly unknown[]): string[] {
  const byName = (list: readonly unknown[]) => new Map(list.map((s, i) => [String((s as { name?: unknown })?.name ?? `#${i}`), s]))
  const left = byName(a)
  const right = byName(b)
  const out: string[] = []
  for (const [name, s] of left) if (!right.has(name)) out.push(`- service ${name} (${JSON.stringify(s)})`)
  for (const [name, s] of right) if (!left.has(name)) out.push(`+ service ${name} (${JSON.stringify(s)})`)
  for (const [name, s] of right) if (left.has(name)) leafDiff(left.get(name), s, `service ${name}`, out)
  const order = (list: readonly unknown[]) => list.map((s) => String((s as { name?: unknown })?.name))
  if (out.length === 0 && JSON.stringify(order(a)) !== JSON.stringify(order(b))) out.push(`order: ${order(a).join(',')} -> ${order(b).join(',')}`)
  return out
}

async function diff(v: Values, args: readonly string[], io: Io): Promise<number> {
  const a = tableArg(args[0], 'fleet diff A B: A')
  const b = tableArg(args[1], 'fleet diff A B: B')
  return withFleet(v, async (s, p) => {
    const read = async (name: string) => {
      const node = await s.getDataStat(p.table(name))
      if (node === null) throw new FleetUsageError(`${name} does not exist`)
      return parseTable(node.data, name).services
    }
    const lines = diffTables(await read(a), await read(b))
    for (const l of lines) io.out(l)
    if (lines.length === 0) io.out(`${a} and ${b} route the same`)
    return 0
  })
}

/** `zoo-proxy fleet <verb> [args]`; throws FleetUsageError / ConfigError for exit 2. */
export async function runFleet(args: readonly string[], v: Values, io: Io = consoleIo): Promise<number> {
  const [verb, ...rest] = args
  const most = verb === 'diff' ? 2 : verb === 'push' ? 1 : 0
  if (rest.length > most) throw new FleetUsageError(`unexpected argument "${rest[most]}"`)
  try {
    switch (verb) {
      case 'push':
        return await push(v, rest[0], io)
      case 'status':
        return await status(v, io)
      case 'promote':
        return await promote(v, io)
      case 'rollback':
        return await rollback(v, io)
      case 'history':
        return await history(v, io)
      case 'diff':
        return await diff(v, rest, io)
      default:
        throw new FleetUsageError(`unknown fleet verb "${verb ?? ''}" (push, status, promote, rollback, history, diff)`)
    }
  } catch (err) {
    if (err instanceof FleetDataError) {
      io.err(`zoo-proxy fleet: unreadable fleet data: ${err.problems.join('; ')}`)
      return 1
    }
    throw err
  }
}
