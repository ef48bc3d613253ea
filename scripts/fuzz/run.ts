// The run: the upstreams, the proxy child, the workers and their cases, and the checks at the end.

import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { Rng, Wire, mix } from '../fuzz-wire.js'
import { Case, answered } from './case.js'
import { FAMILIES, FAMILY_WEIGHTS } from './families.js'
import { BOUND_MS, CLIENT_IDLE_MS, EMPTY, IDLE_MARGIN_MS } from './options.js'
import type { FuzzOptions, FuzzResult } from './options.js'
import { startProxyChild } from './proxy-child.js'
import { handMade, sha1 } from './requests.js'
import { Run, describeCase } from './run-state.js'
import { answerBody, startUpstream } from './upstreams.js'
import type { UpstreamStats } from './upstreams.js'

async function runCase(run: Run, port: number, w: number, k: number, max: number, only?: ReadonlySet<string>): Promise<number> {
  const rng = new Rng(mix(run.seed, w, k))
  const family = rng.weighted(FAMILY_WEIGHTS)
  if (only !== undefined && !only.has(family)) return 0
  const c = new Case(run, rng, port, `w${w}#${k}`, family, max)
  const t0 = performance.now()
  run.started(c.rec)
  try {
    await FAMILIES[family]!.run(c)
  } catch (err) {
    // The harness's own bug: it fails the run, never passes as one more outcome of the proxy's.
    run.harnessError(`${c.rec.tag} ${family}: ${(err as Error)?.stack ?? String(err)}`)
  } finally {
    for (const wire of c.rec.wires) wire.destroy()
    // Each close lands the reader's last bytes (a cut head, a partial body) before the check.
    await Promise.all(c.rec.wires.map((wire) => wire.untilClosed()))
    run.open.delete(c.rec)
  }
  c.checkWires()
  const sent = Math.max(1, c.sent)
  const f = run.family(family)
  f.cases++
  f.requests += sent
  const ms = performance.now() - t0
  f.ms += ms
  if (ms >= 1_000) f.slow++
  run.requests += sent
  return sent
}

async function finalGet(run: Run, port: number): Promise<number | null> {
  const id = run.newId()
  const w = new Wire(port, BOUND_MS, () => {})
  w.reader.expect(false)
  w.write(`GET /r/${id}/plain HTTP/1.1\r\nHost: fuzz\r\n\r\n`)
  await w.until(answered(w, 0))
  w.destroy()
  const a = w.reader.answers[0]
  if (a === undefined || !a.complete) return null
  const spec = handMade(id, 'GET', 'plain', { mutated: false, valid: true })
  if (a.headers.get('x-id') !== id || a.body.toString('latin1') !== answerBody(id, 'plain', 0, sha1(EMPTY))) {
    run.leak('crossed', `the final GET /r/${id}/plain got ${a.status} x-id ${a.headers.get('x-id')} ${JSON.stringify(a.body.toString('latin1').slice(0, 80))} (${spec.kind})`)
  }
  return a.status
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzResult> {
  const log = opts.log ?? (() => {})
  const concurrency = Math.max(1, opts.concurrency ?? 128)
  const only = opts.families === undefined || opts.families.length === 0 ? undefined : new Set(opts.families)
  for (const f of only ?? []) if (FAMILIES[f] === undefined) throw new Error(`no family ${f}; the families are ${Object.keys(FAMILIES).join(', ')}`)
  const run = new Run(opts.seed >>> 0, log)
  const upstreamStats: UpstreamStats = { requests: 0, upgrades: 0, nested: 0, cut: 0, malformed: {} }
  const upstreams = [await startUpstream(upstreamStats, run.nested), await startUpstream(upstreamStats, run.nested)]
  // Twice the clients: a client that left may still hold an upstream connection a while.
  const child = await startProxyChild(2 * concurrency, upstreams.map((u) => u.port))
  let crash: FuzzResult['crash'] = null
  child.onExit = () => {
    const lastCases = [...new Set([...run.open, ...run.recent])].map((rec) => describeCase(rec))
    crash = { code: child.exit?.code ?? null, signal: child.exit?.signal ?? null, output: child.output(), lastCases }
    log(`PROXY CHILD EXITED (seed ${run.seed}): code ${crash.code}, signal ${crash.signal}`)
    run.stop()
  }
  const started = performance.now()
  let lastAt = started
  let lastCount = 0
  const progress = setInterval(() => {
    const now = performance.now()
    const rate = Math.round(((run.requests - lastCount) * 1000) / (now - lastAt))
    ;[lastAt, lastCount] = [now, run.requests]
    log(`  ${run.requests}/${opts.requests} requests, ${rate}/s, crossed ${run.crossed}, corrupt ${run.corrupt}`)
  }, 10_000)
  try {
    if (opts.cases !== undefined && opts.cases.length > 0) {
      for (const tag of opts.cases) {
        const m = /^w(\d+)#(\d+)$/.exec(tag)
        if (m === null) throw new Error(`--case wants w<worker>#<case>, got ${tag}`)
        await runCase(run, child.port, Number(m[1]), Number(m[2]), 5)
      }
    } else {
      const workers: Promise<void>[] = []
      for (let w = 0; w < concurrency; w++) {
        const quota = Math.floor(opts.requests / concurrency) + (w < opts.requests % concurrency ? 1 : 0)
        workers.push(
          (async () => {
            for (let k = 0, sent = 0; sent < quota && !run.stopped; k++) sent += await runCase(run, child.port, w, k, quota - sent, only)
          })(),
        )
      }
      await Promise.all(workers)
    }
  } finally {
    clearInterval(progress)
  }
  const seconds = (performance.now() - started) / 1000
  // A parser is freed a turn after its close: a crash from that comes just after the last case.
  await sleep(300)
  const finalStatus = crash === null ? await finalGet(run, child.port) : null
  // The proxy closes idle client connections after CLIENT_IDLE_MS (swept each second) and idle
  // upstream ones after the pool's keepAliveTimeoutMs: a socket still open after both, with a
  // margin for a busy machine, is held by something.
  const openUpstream = () => upstreams.reduce((n, u) => n + u.open, 0)
  let stats: Awaited<ReturnType<typeof child.stats>> = null
  if (crash === null) {
    const deadline = performance.now() + Math.max(CLIENT_IDLE_MS, child.upstreamIdleMs) + IDLE_MARGIN_MS
    for (;;) {
      stats = await child.stats()
      if ((stats !== null && stats.sockets === 0 && openUpstream() === 0) || performance.now() > deadline || crash !== null) break
      await sleep(250)
    }
  }
  const openAtEnd = openUpstream()
  await child.stop()
  await Promise.all(upstreams.map((u) => u.close()))
  const unexpected = [...run.unexpected].map(([what, u]) => ({ what, count: u.count, example: u.example })).sort((a, b) => b.count - a.count)
  const proxy = stats === null ? null : { rssMB: Math.round(stats.rss / 1048576), sockets: stats.sockets }
  const failures = failuresOf({ crash, crossed: run.crossed, corrupt: run.corrupt, finalStatus, unexpected, harnessErrors: run.harnessErrors, upstreamStats, openAtEnd, proxy })
  return {
    seed: run.seed,
    requests: run.requests,
    seconds,
    perSecond: run.requests / seconds,
    crash,
    crossed: run.crossed,
    crossedSameConnection: run.crossedSameConnection,
    corrupt: run.corrupt,
    leaks: run.leaks,
    finalStatus,
    families: run.families,
    unexpected,
    upstream: {
      requests: upstreamStats.requests,
      upgrades: upstreamStats.upgrades,
      malformed: upstreamStats.malformed,
      cut: upstreamStats.cut,
      nested: upstreamStats.nested,
      openConnections: openAtEnd,
    },
    proxy,
    connectErrors: run.connectErrors,
    harnessErrors: run.harnessErrors,
    headRefusalBodies: run.headRefusalBodies,
    failures,
    ok: failures.length === 0,
  }
}

/** Every reason a run fails, one line each: the judge's verdict. */
function failuresOf(r: {
  crash: FuzzResult['crash']
  crossed: number
  corrupt: number
  finalStatus: number | null
  unexpected: FuzzResult['unexpected']
  harnessErrors: readonly string[]
  upstreamStats: UpstreamStats
  openAtEnd: number
  proxy: FuzzResult['proxy']
}): string[] {
  const f: string[] = []
  if (r.crash !== null) f.push(`the proxy child exited (code ${r.crash.code}, signal ${r.crash.signal})`)
  if (r.crossed > 0) f.push(`${r.crossed} answers carried another request's bytes`)
  if (r.corrupt > 0) f.push(`${r.corrupt} answers carried a body other than their own`)
  if (r.finalStatus !== 200) f.push(`the final GET got ${r.finalStatus ?? 'no answer'}`)
  for (const u of r.unexpected) f.push(`${u.count} x ${u.what}`)
  if (r.harnessErrors.length > 0) f.push(`${r.harnessErrors.length} harness errors`)
  if (r.upstreamStats.nested > 0) f.push(`${r.upstreamStats.nested} smuggled requests reached an upstream`)
  const malformed = Object.entries(r.upstreamStats.malformed)
  if (malformed.length > 0) f.push(`the proxy sent malformed requests upstream: ${JSON.stringify(r.upstreamStats.malformed)}`)
  if (r.openAtEnd > 0) f.push(`${r.openAtEnd} upstream connections still open after the idle timeouts`)
  if (r.proxy === null && r.crash === null) f.push('the proxy child did not answer for its stats')
  else if (r.proxy !== null && r.proxy.sockets > 0) f.push(`${r.proxy.sockets} sockets still open in the proxy after the idle timeouts`)
  return f
}
