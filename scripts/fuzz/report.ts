// The result of a run as the lines `npm run fuzz` prints.

import type { FuzzResult } from './options.js'

/** The result as the lines `npm run fuzz` prints. */
export function report(r: FuzzResult): string[] {
  const lines: string[] = []
  const pad = (s: string | number, n: number) => String(s).padEnd(n)
  lines.push('', `${pad('family', 18)}${pad('cases', 9)}${pad('requests', 10)}${pad('ms/case', 9)}${pad('>=1s', 7)}outcomes`)
  for (const [name, f] of Object.entries(r.families).sort((a, b) => b[1].requests - a[1].requests)) {
    const outcomes = Object.entries(f.outcomes)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k}:${v}`)
      .join(' ')
    lines.push(`${pad(name, 18)}${pad(f.cases, 9)}${pad(f.requests, 10)}${pad((f.ms / Math.max(1, f.cases)).toFixed(1), 9)}${pad(f.slow, 7)}${outcomes}`)
  }
  lines.push('')
  lines.push(`upstreams: ${r.upstream.requests} requests, ${r.upstream.upgrades} upgrades, ${r.upstream.openConnections} connections open at the end`)
  lines.push(`  malformed requests from the proxy: ${JSON.stringify(r.upstream.malformed)}; cut off mid-request: ${r.upstream.cut}; smuggled requests that reached them: ${r.upstream.nested}`)
  lines.push(`proxy child: ${r.crash === null ? 'alive' : 'EXITED'}${r.proxy === null ? '' : `, rss ${r.proxy.rssMB} MB, ${r.proxy.sockets} sockets open at the end`}`)
  if (Object.keys(r.connectErrors).length > 0) lines.push(`client connect errors: ${JSON.stringify(r.connectErrors)}`)
  if (r.unexpected.length > 0) {
    lines.push('', 'unexpected outcomes (count, what, first example):')
    for (const u of r.unexpected.slice(0, 40)) lines.push(`  ${pad(u.count, 8)}${u.what}  [${u.example.slice(0, 2000)}]`)
  }
  if (r.leaks.length > 0) lines.push('', 'leaks:', ...r.leaks.map((l) => `  ${l.slice(0, 3000)}`))
  if (r.crash !== null) {
    lines.push('', `THE PROXY CHILD EXITED: code ${r.crash.code}, signal ${r.crash.signal}`, 'its last output:', r.crash.output, 'cases open or recent:')
    lines.push(...r.crash.lastCases.map((l) => `  ${l}`))
  }
  lines.push('')
  lines.push(
    `crash: ${r.crash === null ? 'none' : 'YES'}; crossed: ${r.crossed} (same connection: ${r.crossedSameConnection}); corrupt: ${r.corrupt}; final GET: ${r.finalStatus ?? 'no answer'}`,
  )
  lines.push(`${r.requests} requests in ${r.seconds.toFixed(1)} s, ${Math.round(r.perSecond)} requests/s (seed ${r.seed})`)
  lines.push(`refusals of a malformed HEAD head sent with their JSON body (counted apart): ${r.headRefusalBodies}`)
  if (r.harnessErrors.length > 0) lines.push('', 'harness errors (bugs in the harness, not the proxy; they fail the run):', ...r.harnessErrors.slice(0, 10).map((e) => `  ${e.slice(0, 2000)}`))
  if (r.failures.length > 0) lines.push('', 'FAILED because:', ...r.failures.map((f) => `  ${f}`))
  lines.push(r.ok ? 'OK' : 'FAIL')
  return lines
}
