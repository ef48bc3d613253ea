// `npm run fuzz -- [--requests N] [--seed S] [--concurrency C] [--case w3#127]`: hostile HTTP/1.1
// against the proxy, to show it neither crashes nor hands one client's answer to another.
//
// The proxy runs in a child process (this file with --proxy-child, role `worker`, no ZooKeeper),
// so a crash in native code shows as the child exiting with a signal instead of taking the
// harness down with it. Two node:http upstreams in this process answer `/r/<id>/<kind>` with
// `<id>` in an `x-id` header and in the body, in the way `<kind>` names (normal, slow, large,
// reset, and raw misbehaving answers such as a second unasked-for answer in the same write).
// `concurrency` workers open raw sockets and send a seeded mix of cases, each family of attack
// at its own weight (see FAMILIES). Every outcome is either one its case allows or a failure the
// report names (run.ts failuresOf; docs/http.md, "What the fuzz run judges"): a crash, another
// request's bytes anywhere a client reads, a body not its own, a hang, malformed or stray answer
// bytes, a cut of a whole answer, an answer to what must be refused, a smuggled request upstream,
// a socket left open, a harness error; and at the end a plain GET must still get 200.
//
// Every case draws from its own PRNG, seeded from (seed, worker, case number), so the seed
// printed first replays the run, and `--case w3#127` replays one case (same --requests and
// --concurrency; ids differ, the bytes otherwise do not).
//
// The sections live beside this entry: options.ts (what a run takes and gives), upstreams.ts,
// proxy-child.ts, run-state.ts, requests.ts (and what their answers must be), case.ts (one case
// and its judge), families.ts, run.ts and report.ts.

import { randomInt } from 'node:crypto'
import { realpathSync } from 'node:fs'
import process from 'node:process'
import { fileURLToPath } from 'node:url'
import { adminReport, runAdminFuzz } from '../fuzz-admin.js'
import { h2Report, runH2Fuzz } from '../fuzz-h2.js'
import { runZnodeFuzz, znodeReport } from '../fuzz-znode.js'
import { FAMILIES } from './families.js'
import { proxyChild } from './proxy-child.js'
import { report } from './report.js'
import { runFuzz } from './run.js'

export type { FamilyStats, FuzzOptions, FuzzResult } from './options.js'
export { answerBody } from './upstreams.js'
export { report, runFuzz }

const SELF = fileURLToPath(import.meta.url)

function argValue(args: readonly string[], name: string): string | undefined {
  const at = args.indexOf(name)
  return at >= 0 ? args[at + 1] : undefined
}

/**
 * The control side's families (issue 21): not requests through the proxy's listener but the admin
 * listener (scripts/fuzz-admin.ts) and znode data fed to the codecs (scripts/fuzz-znode.ts), each a
 * run of its own after the request families, from the same seed. Their cases are `a#N` and `z#N`.
 * The HTTP/2 family (scripts/fuzz-h2.ts, issue 26 §4) runs the same way, with its own proxy child:
 * its cases are `h#N`.
 */
const CONTROL_FAMILIES = ['admin', 'znode', 'h2']

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  if (args[0] === '--proxy-child') return proxyChild(Number(args[1]), args.slice(2).map(Number))
  if (args.includes('--help')) {
    console.log('npm run fuzz -- [--requests N (1000000)] [--seed S (random)] [--concurrency C (128)] [--family F ...] [--case w<worker>#<case> | a#<case> | z#<case> | h#<case> ...]')
    console.log(`families: ${[...Object.keys(FAMILIES), ...CONTROL_FAMILIES].join(', ')}`)
    console.log('admin, znode and h2 run after the others, requests/50, requests/10 and requests/20 cases; alone (--family admin), --requests cases')
    return
  }
  const requests = Number(argValue(args, '--requests') ?? 1_000_000)
  const seed = Number(argValue(args, '--seed') ?? randomInt(1, 2 ** 31 - 1))
  const concurrency = Number(argValue(args, '--concurrency') ?? 128)
  const allCases = args.flatMap((a, i) => (args[i - 1] === '--case' ? [a] : []))
  const allFamilies = args.flatMap((a, i) => (args[i - 1] === '--family' ? [a] : []))
  if (![requests, seed, concurrency].every((n) => Number.isInteger(n) && n >= 0)) throw new Error('--requests, --seed and --concurrency take whole numbers')
  const control = (f: string) => CONTROL_FAMILIES.includes(f)
  const families = allFamilies.filter((f) => !control(f))
  const cases = allCases.filter((c) => !/^[azh]#/.test(c))
  const caseNumbers = (prefix: string) => allCases.flatMap((c) => (c.startsWith(`${prefix}#`) ? [Number(c.slice(2))] : []))
  // What runs: everything by default; else the families and cases named.
  const named = allFamilies.length > 0 || allCases.length > 0
  const runs = (family: string, prefix: string) => !named || allFamilies.includes(family) || caseNumbers(prefix).length > 0
  const alone = named && families.length === 0 && cases.length === 0
  console.log(`fuzz: seed ${seed} (replay: npm run fuzz -- --seed ${seed} --requests ${requests} --concurrency ${concurrency})`)
  let ok = true
  if (!alone) {
    const result = await runFuzz({ requests, seed, concurrency, cases, families, log: (line) => console.log(line) })
    for (const line of report(result)) console.log(line)
    ok &&= result.ok
  }
  if (runs('admin', 'a')) {
    const only = caseNumbers('a')
    const r = await runAdminFuzz({ cases: alone ? requests : Math.max(200, Math.round(requests / 50)), seed, ...(only.length > 0 ? { only } : {}) })
    for (const line of adminReport(r)) console.log(line)
    ok &&= r.ok
  }
  if (runs('znode', 'z')) {
    const only = caseNumbers('z')
    const r = runZnodeFuzz({ cases: alone ? requests : Math.max(1000, Math.round(requests / 10)), seed, ...(only.length > 0 ? { only } : {}) })
    for (const line of znodeReport(r)) console.log(line)
    ok &&= r.ok
  }
  if (runs('h2', 'h')) {
    const only = caseNumbers('h')
    const r = await runH2Fuzz({ cases: alone ? requests : Math.max(100, Math.round(requests / 20)), seed, ...(only.length > 0 ? { only } : {}), log: (line) => console.log(line) })
    for (const line of h2Report(r)) console.log(line)
    ok &&= r.ok
  }
  process.exitCode = ok ? 0 : 1
}

const entry = process.argv[1] === undefined ? '' : realpathSync(process.argv[1])
if (entry === SELF) await main()
