// The optional snapshot file (`zookeeper.snapshotFile`): the last known instances of every service,
// written after each change, so a proxy that starts while ZooKeeper is down can serve from it.
// Written to a temporary file and renamed, so a crash mid-write never leaves half a file.

import process from 'node:process'
import { readFileSync } from 'node:fs'
import { rename, writeFile } from 'node:fs/promises'
import { WEIGHT_MAX, WEIGHT_MIN } from './endpoint.js'
import type { Endpoint } from './endpoint.js'
import type { Logger } from '../log.js'

interface FileShape {
  readonly version: 1
  readonly writtenAt: string
  readonly services: Record<string, { readonly path: string; readonly endpoints: readonly Endpoint[] }>
}

function isEndpoint(e: unknown): e is Endpoint {
  const x = e as Endpoint
  return (
    x !== null &&
    typeof x === 'object' &&
    typeof x.key === 'string' &&
    typeof x.host === 'string' &&
    // The file is read from disk like a znode is: its numbers are held to the same bounds.
    Number.isInteger(x.port) &&
    x.port >= 1 &&
    x.port <= 65535 &&
    typeof x.weight === 'number' &&
    x.weight >= WEIGHT_MIN &&
    x.weight <= WEIGHT_MAX &&
    (x.state === 'up' || x.state === 'draining')
  )
}

/** The instances per service path in the file; empty when it is missing or unreadable (with a warning). */
export function readSnapshotFile(file: string, logger: Logger): Map<string, Endpoint[]> {
  const out = new Map<string, Endpoint[]>()
  let data: FileShape
  try {
    data = JSON.parse(readFileSync(file, 'utf8')) as FileShape
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') logger.warn({ file, err: String(err) }, 'ignoring unreadable snapshot file')
    return out
  }
  for (const s of Object.values(data?.services ?? {})) {
    if (typeof s?.path !== 'string' || !Array.isArray(s.endpoints)) continue
    out.set(s.path, s.endpoints.filter(isEndpoint).map((e) => Object.freeze({ ...e, meta: Object.freeze({ ...(e.meta ?? {}) }) })))
  }
  return out
}

export class SnapshotWriter {
  readonly #file: string
  readonly #log: Logger
  readonly #services = new Map<string, { path: string; endpoints: readonly Endpoint[] }>()
  #writing: Promise<void> | null = null
  #dirty = false

  constructor(file: string, logger: Logger) {
    this.#file = file
    this.#log = logger
  }

  update(name: string, path: string, endpoints: readonly Endpoint[]): void {
    this.#services.set(name, { path, endpoints })
    this.#dirty = true
    if (this.#writing === null) this.#writing = this.#flush()
  }

  /** Forgets every service not in `names` (after a reload), writing the file again if one went. */
  retain(names: ReadonlySet<string>): void {
    let dropped = false
    for (const name of [...this.#services.keys()]) {
      if (names.has(name)) continue
      this.#services.delete(name)
      dropped = true
    }
    if (!dropped) return
    this.#dirty = true
    if (this.#writing === null) this.#writing = this.#flush()
  }

  async #flush(): Promise<void> {
    while (this.#dirty) {
      this.#dirty = false
      const body: FileShape = { version: 1, writtenAt: new Date().toISOString(), services: Object.fromEntries(this.#services) }
      const tmp = `${this.#file}.${process.pid}.tmp`
      try {
        await writeFile(tmp, JSON.stringify(body, null, 1))
        await rename(tmp, this.#file)
      } catch (err) {
        this.#log.warn({ file: this.#file, err: String(err) }, 'could not write the snapshot file')
      }
    }
    this.#writing = null
  }

  /** Resolves once everything handed over is on disk. */
  async flushed(): Promise<void> {
    while (this.#writing !== null) await this.#writing
  }
}
