// The `znode` family of `npm run fuzz` (issue 21): what one znode's data can do to the proxy.
// Seeded data in every layout lib/discovery/codecs.ts reads (ours, Curator, ServerSet, plain
// `host:port`, empty data with a `host:port` name), then bent: every field swapped for another JSON
// type, numbers at and past every edge (1e308, 1e400 written out, -0, 5e-324, 2^53, 400 digits),
// numeric strings, unknown keys, deep nesting, bytes that are not UTF-8. Fed straight to
// decodeInstance (pure, no ZooKeeper), and judged: it never throws, and every endpoint it accepts
// is bounded (port an integer 1-65535, weight finite and >= 0, state up or draining, frozen).
//
// Each case draws from its own PRNG seeded from (seed, case number), so `z#N` replays alone.

import { Buffer } from 'node:buffer'
import { decodeInstance } from '../lib/discovery/codecs.js'
import type { DecodeResult } from '../lib/discovery/codecs.js'
import { Rng, mix } from './fuzz-wire.js'

export interface ZnodeFuzzOptions {
  readonly cases: number
  readonly seed: number
  /** Only these case numbers (a replay of `z#N`). */
  readonly only?: readonly number[]
}

export interface ZnodeFuzzResult {
  readonly seed: number
  readonly cases: number
  /** `accepted <format>` or `rejected`, counted. */
  readonly outcomes: Readonly<Record<string, number>>
  /** Throws and out-of-bound endpoints, with one example each. */
  readonly unexpected: readonly { readonly what: string; readonly count: number; readonly example: string }[]
  readonly ok: boolean
}

/** Text written into the JSON as it is (a number JSON.stringify cannot make: 1e400, -0, 400 digits). */
class Raw {
  constructor(readonly text: string) {}
}

/** JSON.stringify that writes Raw values verbatim and can leave a key out (undefined). */
function write(v: unknown): string {
  if (v instanceof Raw) return v.text
  if (Array.isArray(v)) return `[${v.map(write).join(',')}]`
  if (v !== null && typeof v === 'object') {
    const parts: string[] = []
    for (const [k, x] of Object.entries(v)) if (x !== undefined) parts.push(`${JSON.stringify(k)}:${write(x)}`)
    return `{${parts.join(',')}}`
  }
  return v === undefined ? 'null' : JSON.stringify(v)
}

const EDGE_NUMBERS = [
  '0', '-0', '1', '0.5', '2', '65535', '65536', '-1', '1e308', '1.7976931348623157e308', '1e309', '1e400', '-1e400', '5e-324', '1e-400',
  '9007199254740993', '4294967296', '2147483648', '1.0', '80.0', '8080.5', '1E3', '0.0000001', '100000000000000000000000',
]

function number(rng: Rng): Raw {
  switch (rng.int(0, 3)) {
    case 0:
      return new Raw(rng.pick(EDGE_NUMBERS))
    case 1:
      return new Raw(String(rng.int(-70_000, 70_000)))
    case 2:
      // A long run of digits, maybe with a fraction or an exponent.
      return new Raw(`${rng.chance(0.2) ? '-' : ''}${'9'.repeat(rng.int(1, 400))}${rng.chance(0.3) ? `.${'5'.repeat(rng.int(1, 50))}` : ''}${rng.chance(0.3) ? `e${rng.int(-400, 400)}` : ''}`)
    default:
      return new Raw(String(rng.next() * 10 ** rng.int(-5, 20)))
  }
}

const NUMERIC_STRINGS = ['1', ' 2 ', '1e308', '1e400', 'Infinity', '-Infinity', 'NaN', '-1', '0x10', '0b1', '', ' ', '1_000', '٣', '+5', '.5', '5.', '1e-400', '99999999999999999999']

/** Any JSON value, `depth` levels deep at most. */
function anyValue(rng: Rng, depth: number): unknown {
  switch (rng.int(0, depth > 0 ? 8 : 5)) {
    case 0:
      return null
    case 1:
      return rng.chance(0.5)
    case 2:
      return number(rng)
    case 3:
      return rng.pick(NUMERIC_STRINGS)
    case 4:
      return rng.pick(['', 'up', 'draining', 'UP', 'ALIVE', 'DEAD', 'https', 'http', 'ftp', '\u0000', '\ud800', 'é'.repeat(rng.int(1, 300)), rng.text(rng.int(0, 40))])
    case 5:
      return rng.pick([undefined, 'h', '10.0.0.1'])
    case 6:
    case 7: {
      const o: Record<string, unknown> = {}
      const keys = ['host', 'port', 'weight', 'state', 'scheme', 'meta', 'address', 'sslPort', 'payload', 'metadata', 'serviceEndpoint', 'status', 'shard', '__proto__', 'constructor', rng.text(4)]
      // defineProperty: an assignment to `__proto__` would set the prototype, not write the key.
      for (let i = rng.int(0, 5); i > 0; i--) Object.defineProperty(o, rng.pick(keys), { value: anyValue(rng, depth - 1), enumerable: true, writable: true, configurable: true })
      return o
    }
    default:
      return Array.from({ length: rng.int(0, 4) }, () => anyValue(rng, depth - 1))
  }
}

/** A value for a field: mostly a sane one, else anything at all. */
function field(rng: Rng, sane: () => unknown): unknown {
  const r = rng.next()
  if (r < 0.75) return sane()
  if (r < 0.8) return undefined
  if (r < 0.9) return number(rng)
  return anyValue(rng, 2)
}

function host(rng: Rng): unknown {
  return rng.pick(['127.0.0.1', '10.0.0.5', '[::1]', '::1', 'svc.example.test', 'a', 'h'.repeat(rng.int(250, 260)), 'a b', 'a/b', '[', '']) as unknown
}

const port = (rng: Rng) => () => (rng.chance(0.7) ? rng.int(1, 65535) : number(rng))
const weight = (rng: Rng) => () => (rng.chance(0.5) ? number(rng) : rng.pick(NUMERIC_STRINGS))

/** The data of one child znode, in one of the layouts (or none), and the child's name. */
function znode(rng: Rng): { name: string; data: Buffer | null; layout: string } {
  const layout = rng.weighted([['ours', 30], ['curator', 25], ['serverset', 15], ['text', 10], ['name', 8], ['any', 8], ['bytes', 4]] as const)
  const name = rng.chance(0.8) ? `n${rng.int(0, 9999)}` : rng.pick(['127.0.0.1:80', '[::1]:65535', 'h:0', 'h:65536', 'h:99999', ':80', 'h:', 'a b:1', `h:${'1'.repeat(rng.int(1, 30))}`])
  let value: unknown
  switch (layout) {
    case 'ours':
      value = { host: field(rng, () => host(rng)), port: field(rng, port(rng)), weight: field(rng, weight(rng)), state: field(rng, () => rng.pick(['up', 'draining'])), scheme: field(rng, () => rng.pick(['http', 'https'])), meta: field(rng, () => anyValue(rng, 3)) }
      break
    case 'curator': {
      const metadata = { weight: field(rng, weight(rng)), instance_status: field(rng, () => rng.pick(['UP', 'OUT_OF_SERVICE'])) }
      value = {
        name: field(rng, () => 'svc'),
        id: field(rng, () => rng.text(8)),
        address: field(rng, () => host(rng)),
        port: field(rng, port(rng)),
        sslPort: rng.chance(0.4) ? null : field(rng, port(rng)),
        payload: field(rng, () => ({ '@class': 'x', weight: field(rng, weight(rng)), metadata: field(rng, () => metadata) })),
        enabled: field(rng, () => rng.chance(0.8)),
        registrationTimeUTC: number(rng),
      }
      break
    }
    case 'serverset':
      value = { serviceEndpoint: field(rng, () => ({ host: field(rng, () => host(rng)), port: field(rng, port(rng)) })), additionalEndpoints: field(rng, () => ({})), status: field(rng, () => rng.pick(['ALIVE', 'DEAD', 'STARTING'])), shard: field(rng, () => number(rng)) }
      break
    case 'text':
      return { name, layout, data: Buffer.from(`${rng.chance(0.2) ? ' ' : ''}${String(host(rng))}:${rng.chance(0.7) ? rng.int(0, 99999) : rng.text(rng.int(0, 8))}${rng.chance(0.2) ? '\n' : ''}`) }
    case 'name':
      return { name, layout, data: rng.pick([null, Buffer.alloc(0), Buffer.from(' \n')]) }
    case 'bytes':
      return { name, layout, data: rng.bytes(rng.int(0, 300)) }
    default:
      value = anyValue(rng, 6)
  }
  let text = write(value)
  // Deep nesting inside an otherwise valid object, and cut or bent JSON.
  const bend = rng.next()
  if (bend < 0.05) {
    const depth = rng.int(100, 20_000)
    text = `{"host":"h","port":1,"meta":${'['.repeat(depth)}${']'.repeat(depth)}}`
  } else if (bend < 0.1) text = text.slice(0, rng.int(0, text.length))
  return { name, layout, data: Buffer.from(text) }
}

/** What is wrong with an accepted endpoint; null: it is bounded as the balancer assumes. */
function unbounded(r: DecodeResult, key: string): string | null {
  if (!r.ok) return typeof r.reason === 'string' && r.reason !== '' ? null : 'rejected without a reason'
  const e = r.endpoint
  if (e.key !== key) return `key ${JSON.stringify(e.key)} is not the znode's path`
  if (!Number.isInteger(e.port) || e.port < 1 || e.port > 65535) return `port ${e.port} outside 1-65535`
  // The bound on weights (0-256, issue 21 item 1) lands apart from this; finite and >= 0 holds either way.
  if (typeof e.weight !== 'number' || !Number.isFinite(e.weight) || e.weight < 0) return `weight ${String(e.weight)} not finite and >= 0`
  if (typeof e.host !== 'string' || e.host === '' || e.host.length > 253) return 'host empty or over 253 characters'
  if (e.state !== 'up' && e.state !== 'draining') return `state ${String(e.state)}`
  if (!Object.isFrozen(e) || !Object.isFrozen(e.meta)) return 'endpoint not frozen'
  return null
}

export function runZnodeFuzz(opts: ZnodeFuzzOptions): ZnodeFuzzResult {
  const seed = opts.seed >>> 0
  const outcomes: Record<string, number> = {}
  const unexpected = new Map<string, { count: number; example: string }>()
  const note = (what: string, example: string) => {
    const u = unexpected.get(what)
    if (u !== undefined) u.count++
    else unexpected.set(what, { count: 1, example })
  }
  const numbers = opts.only ?? Array.from({ length: opts.cases }, (_, k) => k)
  for (const k of numbers) {
    const rng = new Rng(mix(seed, 0x7a6e6f64 /* 'znod' */, k))
    const { name, data, layout } = znode(rng)
    const key = `/fuzz/${name}`
    const example = () => `z#${k} ${layout} name ${JSON.stringify(name)} data ${data === null ? 'null' : JSON.stringify(data.toString('latin1').slice(0, 600))}`
    let r: DecodeResult
    try {
      r = decodeInstance(key, name, data)
    } catch (err) {
      note(`threw ${(err as Error)?.name ?? typeof err}: ${String((err as Error)?.message ?? err).slice(0, 80)}`, example())
      continue
    }
    const wrong = unbounded(r, key)
    if (wrong !== null) note(`accepted out of bounds: ${wrong.replace(/-?[\d.e+]{6,}|Infinity|NaN/g, 'N')}`, `${example()} -> ${JSON.stringify(r)}`)
    const outcome = r.ok ? `accepted ${String(r.endpoint.meta.format)}` : 'rejected'
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
  }
  const list = [...unexpected].map(([what, u]) => ({ what, count: u.count, example: u.example })).sort((a, b) => b.count - a.count)
  return { seed, cases: numbers.length, outcomes, unexpected: list, ok: list.length === 0 }
}

/** The result as `npm run fuzz` prints it. */
export function znodeReport(r: ZnodeFuzzResult): string[] {
  const lines = [`znode: ${r.cases} cases (seed ${r.seed}): ${Object.entries(r.outcomes).map(([k, v]) => `${k}:${v}`).join(' ')}`]
  for (const u of r.unexpected.slice(0, 20)) lines.push(`  ${String(u.count).padEnd(8)}${u.what}  [${u.example.slice(0, 1500)}]`)
  lines.push(`znode: ${r.ok ? 'OK' : 'FAIL'}`)
  return lines
}
