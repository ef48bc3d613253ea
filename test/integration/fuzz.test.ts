// The fuzz harness (scripts/fuzz/, `npm run fuzz`) at a fixed seed, small enough for the suite:
// the proxy in a child process, a seeded mix of valid, pipelined, malformed, mutated and
// abandoned requests and upgrades from concurrent raw clients, against upstreams that misbehave
// on purpose. Every outcome is either one its case allows or a failure, named in the report
// (docs/http.md, "What the fuzz run judges"); a failure message carries the report, whose cases
// replay with --case.

import { expect } from 'chai'
import { report, runFuzz } from '../../scripts/fuzz/index.js'
import type { FuzzResult } from '../../scripts/fuzz/index.js'

const SEED = 20_261_130
const REQUESTS = 20_000
/** Clients at once: enough to interleave exchanges on pooled connections, few enough for two busy cores. */
const CONCURRENCY = 32

describe(`the proxy under ${REQUESTS} fuzzed requests (seed ${SEED})`, function () {
  // About 60-110 s on two cores shared with other work; under `stress-ng --cpu 2` on top, about
  // twice that. What is judged is what the proxy answered, never how fast: the budget is wide.
  this.timeout(600_000)
  let result: FuzzResult

  before(async () => {
    result = await runFuzz({ requests: REQUESTS, seed: SEED, concurrency: CONCURRENCY })
  })

  const why = () => report(result).join('\n')

  it('keeps the proxy process alive through every case', () => {
    expect(result.crash, why()).to.equal(null)
  })

  it("never gives a client bytes that carry another request's id, in an answer whole or cut, or after it", () => {
    expect(result.crossed, why()).to.equal(0)
  })

  it('gives every client the body its own request was answered with', () => {
    expect(result.corrupt, why()).to.equal(0)
  })

  it('gives every request an outcome its case allows: no hang, no malformed or stray bytes, no truncation of a whole answer, no answer to a request it must refuse', () => {
    expect(result.unexpected.map((u) => `${u.count} x ${u.what}: ${u.example.slice(0, 600)}`), why()).to.deep.equal([])
  })

  it('forwards no smuggled request and nothing malformed to an upstream', () => {
    expect(result.upstream.nested, why()).to.equal(0)
    expect(result.upstream.malformed, why()).to.deep.equal({})
  })

  it('leaves no socket open on either side once the idle timeouts have passed', () => {
    expect(result.proxy?.sockets, why()).to.equal(0)
    expect(result.upstream.openConnections, why()).to.equal(0)
  })

  it('still answers a plain GET with 200 afterwards', () => {
    expect(result.finalStatus, why()).to.equal(200)
  })

  it('runs without an error of its own (a harness bug fails the run rather than passing as an outcome)', () => {
    expect(result.harnessErrors, why()).to.deep.equal([])
    expect(result.failures, why()).to.deep.equal([])
    expect(result.ok, why()).to.equal(true)
  })
})
