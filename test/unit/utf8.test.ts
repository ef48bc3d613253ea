import { expect } from 'chai'
import { Buffer } from 'node:buffer'
import { firstBadUtf8, strictUtf8 } from '../../lib/utf8.js'
import { seededRandom } from '../support/random.js'

describe('strict UTF-8', () => {
  const fatal = new TextDecoder('utf-8', { fatal: true })
  const valid = (b: Uint8Array) => {
    try {
      fatal.decode(b)
      return true
    } catch {
      return false
    }
  }

  it('agrees with a fatal TextDecoder on 20,000 random byte strings, biased toward multi-byte edges', () => {
    const random = seededRandom(7)
    const edges = [0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x9f, 0xa0, 0x8f, 0x90]
    for (let n = 0; n < 20_000; n++) {
      const len = Math.floor(random() * 8)
      const b = new Uint8Array(len)
      for (let i = 0; i < len; i++) b[i] = random() < 0.7 ? edges[Math.floor(random() * edges.length)]! : Math.floor(random() * 256)
      const at = firstBadUtf8(b)
      expect(at === -1, Buffer.from(b).toString('hex')).to.equal(valid(b))
      // The offset is exact: everything before it decodes, and the string fails from there.
      if (at !== -1) expect(valid(b.subarray(0, at)), Buffer.from(b).toString('hex')).to.equal(true)
    }
  })

  it('names the byte and line of the first bad sequence, and passes good text through', () => {
    expect(strictUtf8(Buffer.from('listen: 1\nname: ä 🔑\n'))).to.equal('listen: 1\nname: ä 🔑\n')
    const bad = Buffer.concat([Buffer.from('a: 1\nb: caf'), Buffer.from([0xe9]), Buffer.from('\n')])
    expect(() => strictUtf8(bad)).to.throw('not UTF-8 at byte 11 (line 2)')
    for (const seq of [[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80]]) {
      expect(() => strictUtf8(Buffer.from([0x41, ...seq])), Buffer.from(seq).toString('hex')).to.throw('not UTF-8 at byte 1 (line 1)')
    }
  })
})
