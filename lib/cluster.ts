// `workers: N`: one port served by N worker processes (node:cluster), one ZooKeeper session.
//
// The primary runs discovery (the only session) and the admin listener, and hands every service
// snapshot to every worker over IPC; a worker started later (or restarted after a crash) first
// gets the latest snapshot of each service. Workers run the request path only. /metrics on the
// primary aggregates the workers' registries (prom-client's AggregatorRegistry).

import process from 'node:process'
import cluster from 'node:cluster'
import type { Worker } from 'node:cluster'
import { AggregatorRegistry } from 'prom-client'
import type { Config } from './config.js'
import type { Endpoint } from './discovery/endpoint.js'
import type { Logger } from './log.js'
import { createProxy } from './proxy.js'
import type { ZooProxy } from './proxy.js'

type ToWorker =
  /** `path`: where the list was read; a worker applies it only to a service configured with that path. */
  | { readonly zp: 'snapshot'; readonly service: string; readonly endpoints: readonly Endpoint[]; readonly path: string }
  | { readonly zp: 'shutdown' }
  /**
   * The primary validated and applied a reload: switch too, to the same text (`text`: the file as
   * the primary read it; absent when the reload did not come from the file).
   */
  | { readonly zp: 'reload'; readonly text?: string }
  /** The config text a worker starts from (asked for with `config?`): the one the primary runs. */
  | { readonly zp: 'config'; readonly text: string }

function isToWorker(m: unknown): m is ToWorker {
  return m !== null && typeof m === 'object' && typeof (m as { zp?: unknown }).zp === 'string'
}

/** Runs in the primary: discovery, admin, N workers kept alive. Resolves with a stopper. */
export async function runPrimary(config: Config, logger: Logger, workers: number, configFile?: string, configText?: string): Promise<{ close(): Promise<void>; reload(): Promise<unknown> }> {
  const latest = new Map<string, { readonly endpoints: readonly Endpoint[]; readonly path: string }>()
  /** The config text the primary runs (read at start, then each reload's), for workers to start from. */
  let appliedText = configText
  /** The text each worker was given to start from. */
  const given = new WeakMap<Worker, string | undefined>()
  let stopping = false
  const send = (w: Worker, m: ToWorker) => {
    if (w.isConnected()) w.send(m)
  }
  const aggregator = new AggregatorRegistry()
  const proxy = await createProxy(config, {
    logger,
    role: 'primary',
    onSnapshot: (service, endpoints, path) => {
      latest.set(service, { endpoints, path })
      for (const w of Object.values(cluster.workers ?? {})) if (w) send(w, { zp: 'snapshot', service, endpoints, path })
    },
    metricsSource: { text: () => aggregator.clusterMetrics(), contentType: aggregator.contentType },
    ...(configFile === undefined ? {} : { configFile }),
    // The primary validates (a refused file changes nothing anywhere); the workers switch after it.
    // Workers get the text the primary read, never the file again: a file rewritten in between
    // (a non-atomic write, a second edit) would have them apply something else, or refuse it.
    onReload: (_config, text) => {
      if (text !== undefined) appliedText = text
      for (const w of Object.values(cluster.workers ?? {})) if (w) send(w, text === undefined ? { zp: 'reload' } : { zp: 'reload', text })
    },
  })
  const fork = (): void => {
    const w = cluster.fork()
    // A worker says hello once it listens for messages (anything sent before that would be lost);
    // it then gets the latest snapshot of every service, and every later one as it comes.
    w.on('message', (m: unknown) => {
      const zp = (m as { zp?: unknown } | null)?.zp
      // A worker starts from the text the primary runs, never from the file as it is now.
      if (zp === 'config?' && appliedText !== undefined) {
        given.set(w, appliedText)
        send(w, { zp: 'config', text: appliedText })
      }
      if (zp !== 'hello') return
      // A reload applied between its start and now: bring it to what is applied.
      if (appliedText !== undefined && given.get(w) !== appliedText) send(w, { zp: 'reload', text: appliedText })
      for (const [service, { endpoints, path }] of latest) send(w, { zp: 'snapshot', service, endpoints, path })
    })
    w.once('exit', (code, signal) => {
      if (stopping) return
      logger.error({ pid: w.process.pid, code, signal }, 'worker died, starting another')
      setTimeout(fork, 200).unref()
    })
  }
  await proxy.start()
  for (let i = 0; i < workers; i++) fork()
  logger.info({ workers }, 'zoo-proxy primary started its workers')
  return {
    reload: () => proxy.reloadFromFile(),
    async close() {
      stopping = true
      const alive = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
      await Promise.all(
        alive.map(
          (w) =>
            new Promise<void>((resolve) => {
              w.once('exit', () => resolve())
              send(w, { zp: 'shutdown' })
              setTimeout(() => w.process.kill('SIGKILL'), config.shutdownTimeoutMs + 2000).unref()
            }),
        ),
      )
      await proxy.close()
    },
  }
}

/** In a worker: the config text the primary runs, to start from (it answers at once). */
export function configTextFromPrimary(): Promise<string> {
  return new Promise((resolve) => {
    const on = (m: unknown) => {
      if (!isToWorker(m) || m.zp !== 'config') return
      process.off('message', on)
      resolve(m.text)
    }
    process.on('message', on)
    process.send?.({ zp: 'config?' })
  })
}

/** Runs in a worker: the request path, fed by the primary. Resolves once it has shut down. */
export async function runWorker(config: Config, logger: Logger, configFile?: string): Promise<void> {
  // Constructing one is what makes prom-client answer the primary's metrics requests in a worker;
  // first thing, so a scrape during start-up gets an (empty) answer rather than a 5 s timeout.
  new AggregatorRegistry()
  let proxy: ZooProxy | null = null
  const early: ToWorker[] = []
  const done = new Promise<void>((resolve) => {
    process.on('message', (m: unknown) => {
      if (!isToWorker(m)) return
      if (proxy === null) {
        early.push(m)
        return
      }
      if (m.zp === 'snapshot') proxy.applySnapshot(m.service, m.endpoints, m.path)
      else if (m.zp === 'reload') void proxy.reloadFromFile(m.text).catch(() => {})
      else if (m.zp === 'shutdown') void proxy.close().then(resolve)
    })
  })
  process.send?.({ zp: 'hello' })
  // SIGINT/SIGTERM reach the whole process group; the primary decides when a worker stops.
  process.on('SIGINT', () => {})
  process.on('SIGTERM', () => {})
  process.on('SIGHUP', () => {})
  const p = await createProxy(config, { logger: logger.child({ worker: process.pid }), role: 'worker', ...(configFile === undefined ? {} : { configFile }) })
  AggregatorRegistry.setRegistries([p.metrics.registry])
  proxy = p
  await p.start()
  for (const m of early.splice(0)) {
    if (m.zp === 'snapshot') p.applySnapshot(m.service, m.endpoints, m.path)
    else if (m.zp === 'reload') void p.reloadFromFile(m.text).catch(() => {})
    else if (m.zp === 'shutdown') void p.close()
  }
  await done
}
