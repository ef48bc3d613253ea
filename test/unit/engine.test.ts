// Which parser the proxy runs on (lib/http/h1/engine.ts): Node's llhttp binding only when it is
// there and behaves as parser.ts uses it; otherwise the portable parser, with the reason.

import { expect } from 'chai'
import { createRequire } from 'node:module'
import { chooseEngine, nativeProblem } from '../../lib/http/h1/engine.js'
import { PortableParser } from '../../lib/http/h1/portable.js'

const real = createRequire(import.meta.url)('_http_common') as { HTTPParser: new () => Record<number | string, unknown>; methods: string[] }

/** The real binding with one thing changed. */
function changed(change: (P: Record<string, unknown>, proto: Record<string, unknown>) => void): unknown {
  class P extends (real.HTTPParser as unknown as new () => object) {}
  for (const k of ['REQUEST', 'RESPONSE', 'kOnMessageBegin', 'kOnHeaders', 'kOnHeadersComplete', 'kOnBody', 'kOnMessageComplete', 'kOnExecute']) {
    Object.defineProperty(P, k, { value: (real.HTTPParser as unknown as Record<string, unknown>)[k], writable: true, configurable: true })
  }
  change(P as unknown as Record<string, unknown>, P.prototype as Record<string, unknown>)
  return { HTTPParser: P, methods: real.methods }
}

describe('choosing the HTTP/1.1 parser', () => {
  it("takes Node's binding when it is there and parses a request as expected", () => {
    const e = chooseEngine(undefined)
    expect(e.name).to.equal('native')
    expect(e.consumes).to.equal(true)
    expect(e.reason).to.equal('')
    expect(chooseEngine('native').name).to.equal('native')
  })

  it('takes the portable parser when told to, whatever the binding', () => {
    const e = chooseEngine('portable')
    expect(e).to.include({ name: 'portable', reason: 'ZOO_PROXY_PARSER=portable', consumes: false })
    expect(e.Parser).to.equal(PortableParser)
  })

  it('takes the portable parser, naming why, when the binding is missing or of another shape', () => {
    const cases: [() => unknown, RegExp][] = [
      [() => { throw new Error("Cannot find module '_http_common'") }, /_http_common cannot be loaded/],
      [() => ({}), /HTTPParser is missing/],
      [() => ({ HTTPParser: real.HTTPParser }), /methods is missing/],
      [() => changed((P) => { P.kOnExecute = undefined }), /HTTPParser\.kOnExecute is missing/],
      [() => changed((_P, proto) => { proto.consume = undefined }), /HTTPParser#consume is missing/],
      [() => changed((_P, proto) => { proto.execute = () => 0 }), /did not parse a request/],
      [() => changed((P) => { P.kOnHeadersComplete = 99 }), /another shape/],
      [() => changed((_P, proto) => { proto.initialize = () => { throw new Error('new signature') } }), /failed \(new signature\)/],
    ]
    for (const [load, why] of cases) {
      const e = chooseEngine(undefined, load)
      expect(e.name, String(why)).to.equal('portable')
      expect(e.consumes).to.equal(false)
      expect(e.reason).to.match(why)
    }
  })

  it('finds nothing wrong with the real binding', () => {
    expect(nativeProblem(real)).to.equal(null)
  })
})
