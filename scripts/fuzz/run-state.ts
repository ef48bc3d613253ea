// One run's state: ids, counters, what was seen.

import type { Wire } from '../fuzz-wire.js'
import type { FamilyStats } from './options.js'


/** A check on an id, so a mutated id (one byte changed) is never taken for another request's. */
function checkOf(n: number): string {
  let h = Math.imul(n ^ 0x5bd1e995, 0x27d4eb2d)
  h ^= h >>> 15
  h = Math.imul(h, 0x165667b1)
  h ^= h >>> 13
  return ((h >>> 0) % 1_679_616).toString(36).padStart(4, '0')
}

export interface CaseRecord {
  readonly tag: string
  readonly family: string
  note: string
  readonly wires: Wire[]
}

export class Run {
  readonly seed: number
  readonly log: (line: string) => void
  readonly families: Record<string, FamilyStats> = {}
  readonly unexpected = new Map<string, { count: number; example: string }>()
  readonly leaks: string[] = []
  readonly nested = new Set<string>()
  readonly wires = new Set<Wire>()
  readonly connectErrors: Record<string, number> = {}
  readonly harnessErrors: string[] = []
  /** The proxy's JSON refusal of a malformed head that began HEAD, read as stray bytes (Case.refusalBody). */
  headRefusalBodies = 0
  /** The last cases started (a crash report lists them, and every case still open). */
  readonly recent: CaseRecord[] = []
  readonly open = new Set<CaseRecord>()
  crossed = 0
  crossedSameConnection = 0
  corrupt = 0
  requests = 0
  stopped = false
  #next = 1

  constructor(seed: number, log: (line: string) => void) {
    this.seed = seed
    this.log = log
  }

  newId(): string {
    const n = this.#next++
    return `${n.toString(36)}-${checkOf(n)}`
  }

  /** An id this run gave to a request (not one a mutation made up). */
  issued(id: string): boolean {
    const m = /^([0-9a-z]{1,8})-([0-9a-z]{4})$/.exec(id)
    if (m === null) return false
    const n = parseInt(m[1]!, 36)
    return n > 0 && n < this.#next && `${n.toString(36)}-${checkOf(n)}` === id
  }

  family(name: string): FamilyStats {
    return (this.families[name] ??= { cases: 0, requests: 0, ms: 0, slow: 0, outcomes: {} })
  }

  note(what: string, example: string): void {
    const u = this.unexpected.get(what)
    if (u !== undefined) u.count++
    else this.unexpected.set(what, { count: 1, example })
  }

  leak(kind: 'crossed' | 'crossedSameConnection' | 'corrupt', line: string): void {
    if (kind === 'crossedSameConnection') this.crossed++
    this[kind]++
    if (this.leaks.length < 30) this.leaks.push(`${kind}: ${line}`)
    if (this.leaks.length <= 5) this.log(`LEAK ${kind}: ${line}`)
  }

  harnessError(what: string): void {
    this.harnessErrors.push(what)
    if (this.harnessErrors.length <= 5) this.log(`HARNESS ERROR ${what}`)
  }

  started(rec: CaseRecord): void {
    this.open.add(rec)
    this.recent.push(rec)
    if (this.recent.length > 16) this.recent.shift()
  }

  stop(): void {
    this.stopped = true
    for (const w of this.wires) w.destroy()
  }
}

export function describeCase(rec: CaseRecord, withRead = false): string {
  const wrote = rec.wires.map((w) => w.written().slice(0, 600)).join(' | ')
  const read = withRead ? `; read ${rec.wires.map((w) => w.read().slice(0, 1200)).join(' | ')}` : ''
  return `${rec.tag} ${rec.family}${rec.note === '' ? '' : ` (${rec.note})`}: wrote ${wrote}${read}`
}
