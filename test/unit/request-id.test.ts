import { expect } from 'chai'
import { RequestIds } from '../../lib/http/h1/request-id.js'

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('request IDs made by the proxy', () => {
  // Several batches of 128, so that refills and the batch boundaries are crossed.
  const ids = new RequestIds()
  const made = Array.from({ length: 128 * 40 + 7 }, () => ids.next())

  it('are RFC 9562 UUIDs of version 4, lower-case, 36 characters', () => {
    for (const id of made) expect(id).to.match(UUID_V4)
  })

  it('never repeat, within a batch, across batches, or between two sources', () => {
    const other = new RequestIds()
    const all = new Set([...made, ...Array.from({ length: 1000 }, () => other.next())])
    expect(all.size).to.equal(made.length + 1000)
  })

  it('have random digits everywhere but the version and the variant', () => {
    // Every random hex position takes every one of the 16 digits over 5,000 IDs (a position
    // stuck at one value, a byte skipped or copied, would show); the variant takes all of 8-b.
    for (let pos = 0; pos < 36; pos++) {
      if ([8, 13, 14, 18, 23].includes(pos)) continue
      const seen = new Set(made.map((id) => id[pos]))
      expect(seen.size, `position ${pos}`).to.equal(pos === 19 ? 4 : 16)
    }
  })
})
