import { expect } from 'chai'
import { MALLOC_TUNING, adviseMalloc, onGlibc } from '../../lib/ops/tuning.js'
import { recordingLogger } from '../support/helpers.js'

describe('malloc tuning advice', () => {
  const saved = process.env.MALLOC_TRIM_THRESHOLD_
  afterEach(() => {
    if (saved === undefined) delete process.env.MALLOC_TRIM_THRESHOLD_
    else process.env.MALLOC_TRIM_THRESHOLD_ = saved
  })

  it('names the variable to set when glibc runs without it', function () {
    if (!onGlibc()) this.skip()
    delete process.env.MALLOC_TRIM_THRESHOLD_
    const log = recordingLogger()
    adviseMalloc(log)
    expect(log.lines).to.have.length(1)
    expect(log.lines[0]!.level).to.equal('info')
    expect(log.lines[0]!.obj).to.deep.equal({ set: `MALLOC_TRIM_THRESHOLD_=${MALLOC_TUNING.MALLOC_TRIM_THRESHOLD_}` })
  })

  it('says nothing when the variable is set, whatever its value', () => {
    process.env.MALLOC_TRIM_THRESHOLD_ = '1'
    const log = recordingLogger()
    adviseMalloc(log)
    expect(log.lines).to.deep.equal([])
  })
})
