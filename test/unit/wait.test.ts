import { expect } from 'chai'
import { waitFor, waitThroughErrors } from '../support/helpers.js'

/** A check that fails its first `failures` calls by throwing `error()`, then passes; counts its calls. */
function flaky(failures: number, error: () => Error) {
  let calls = 0
  return {
    get calls() {
      return calls
    },
    check: () => {
      if (++calls <= failures) throw error()
      return 'done'
    },
  }
}

describe('the test helpers that wait', () => {
  const assertion = () => {
    try {
      expect(1).to.equal(2)
    } catch (err) {
      return err as Error
    }
    throw new Error('unreachable')
  }

  it('waitFor fails at once, with that error, when its check throws', async () => {
    for (const error of [assertion, () => new Error('ECONNREFUSED')]) {
      const c = flaky(5, error)
      const err = await waitFor(c.check, 'nothing', 5_000, 1).catch((e: Error) => e)
      expect(err).to.be.instanceOf(Error)
      expect((err as Error).message).to.equal(error().message)
      expect(c.calls).to.equal(1)
    }
  })

  it('waitThroughErrors polls through other errors, and reports the last at the deadline', async () => {
    const c = flaky(3, () => new Error('ECONNREFUSED'))
    expect(await waitThroughErrors(c.check, 'the server', 5_000, 1)).to.equal('done')
    expect(c.calls).to.equal(4)
    const never = flaky(Infinity, () => new Error('ECONNREFUSED'))
    const err = await waitThroughErrors(never.check, 'the server', 50, 1).catch((e: Error) => e)
    expect((err as Error).message).to.equal('timed out after 50 ms waiting for the server: Error: ECONNREFUSED')
  })

  it('waitThroughErrors still fails at once on an assertion', async () => {
    const c = flaky(5, assertion)
    const err = await waitThroughErrors(c.check, 'nothing', 5_000, 1).catch((e: Error) => e)
    expect((err as Error).name).to.equal('AssertionError')
    expect(c.calls).to.equal(1)
  })
})
