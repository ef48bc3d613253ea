// The control side's fuzz families (scripts/fuzz-admin.ts, scripts/fuzz-znode.ts; issue 21) at a
// fixed seed, small enough for the suite: a few hundred random admin requests against a real
// proxy's admin listeners (with and without a token) in a child process, and a few thousand random
// znode data fed to the codecs. A failure message carries the report, whose cases replay with
// `npm run fuzz -- --seed S --case a#N` (or z#N).

import { expect } from 'chai'
import { adminReport, runAdminFuzz } from '../../scripts/fuzz-admin.js'
import { runZnodeFuzz, znodeReport } from '../../scripts/fuzz-znode.js'

const SEED = 20_261_207

describe(`the control side under fuzzed input (seed ${SEED})`, function () {
  // About 5 s on two cores, most of it the child proxy starting.
  this.timeout(60_000)

  it('answers 400 random admin requests well-formed and below 500 (but /readyz 503), and keeps answering /healthz', async () => {
    const r = await runAdminFuzz({ cases: 400, seed: SEED })
    const why = adminReport(r).join('\n')
    expect(r.crash, why).to.equal(null)
    expect(r.unexpected, why).to.deep.equal([])
    expect(r.healthz, why).to.deep.equal({ open: 200, token: 200 })
    // The run reached every layer: refused, unauthorised, and accepted requests on both listeners.
    for (const outcome of ['open 200', 'open 400', 'token 200', 'token 401', 'token 400']) expect(r.outcomes[outcome] ?? 0, `${outcome}\n${why}`).to.be.greaterThan(0)
  })

  it('decodes 3,000 random znodes of every layout without a throw, each accepted endpoint bounded', () => {
    const r = runZnodeFuzz({ cases: 3_000, seed: SEED })
    const why = znodeReport(r).join('\n')
    expect(r.unexpected, why).to.deep.equal([])
    for (const format of ['zoo-proxy', 'curator', 'serverset', 'text', 'name']) expect(r.outcomes[`accepted ${format}`] ?? 0, `${format}\n${why}`).to.be.greaterThan(0)
    expect(r.outcomes.rejected ?? 0, why).to.be.greaterThan(0)
  })
})
