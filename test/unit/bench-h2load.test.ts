// The pure parts of the HTTP/2 and gRPC benchmarks (bench/h2-peers.ts, bench/grpc-bench-proto.ts):
// what they read from h2load and what they send as a gRPC call. A wrong parse would print wrong
// numbers without failing, so they are checked here rather than only by running a bench.
import { expect } from 'chai'
import { benchService, encodeMsg, grpcFrame } from '../../bench/grpc-bench-proto.js'
import { logPercentiles, parseH2loadSummary } from '../../bench/h2-peers.js'
import { seededRandom } from '../support/random.js'

const summary = (finished: string) => `starting benchmark...
spawning thread #0: 100 total client(s). 20000 total requests
Application protocol: h2c
progress: 100% done

${finished}
requests: 20000 total, 20000 started, 19990 done, 19900 succeeded, 90 failed, 7 errored, 3 timeout
status codes: 19880 2xx, 1 3xx, 2 4xx, 17 5xx
traffic: 552.79KB (566060) total, 143.83KB (147280) headers (space savings 91.20%), 40.88KB (41860) data
`

describe('bench: reading h2load', () => {
  it('reads every count of the summary and the duration in each unit h2load prints', () => {
    for (const [text, seconds] of [
      ['finished in 4.81s, 4156.90 req/s, 110.99KB/s', 4.81],
      ['finished in 812.50ms, 24615.38 req/s, 1.2MB/s', 0.8125],
      ['finished in 950.00us, 100.00 req/s, 1KB/s', 0.00095],
    ] as const) {
      const s = parseH2loadSummary(summary(text))
      expect(s.seconds).to.be.closeTo(seconds, 1e-9)
      expect(s).to.deep.include({ done: 19990, succeeded: 19900, failed: 90, errored: 7, timeout: 3 })
      expect(s.status).to.deep.equal({ '2xx': 19880, '3xx': 1, '4xx': 2, '5xx': 17 })
    }
    expect(parseH2loadSummary(summary('finished in 4.81s, 4156.90 req/s, 110.99KB/s')).rps).to.equal(4156.9)
  })

  it('refuses output without a summary, naming what h2load said', () => {
    for (const out of ['', 'connect to 127.0.0.1:1 failed: Connection refused\n', summary('finished early')]) {
      expect(() => parseH2loadSummary(out)).to.throw(/h2load said/)
    }
  })

  it('takes nearest-rank percentiles of the log in ms, for any count and order of lines', () => {
    const random = seededRandom(7)
    for (let round = 0; round < 50; round++) {
      const n = 1 + Math.floor(random() * 3000)
      const us = Array.from({ length: n }, () => Math.floor(random() * 1_000_000))
      const lines = us.map((v, i) => `${1_700_000_000_000_000 + i}\t200\t${v}`)
      // Lines that are not three numbers (a torn last line, a blank) are skipped.
      const log = [...lines, 'garbage', '', '1\t200'].join('\n')
      const sorted = [...us].sort((a, b) => a - b)
      const rank = (p: number) => sorted[Math.ceil(p * n) - 1]! / 1000
      expect(logPercentiles(log)).to.deep.equal({ p50: rank(0.5), p99: rank(0.99), p999: rank(0.999) })
    }
    expect(logPercentiles('')).to.deep.equal({ p50: 0, p99: 0, p999: 0 })
  })
})

describe('bench: the gRPC call h2load sends', () => {
  it('encodes Msg exactly as protobufjs does, for texts of every varint length class', () => {
    const serialize = benchService().Echo!.requestSerialize
    for (const len of [0, 1, 5, 127, 128, 255, 16_383, 16_384, 70_000]) {
      const text = 'é'.repeat(Math.floor(len / 2)) + 'x'.repeat(len % 2)
      expect(encodeMsg(text).equals(serialize({ text }))).to.equal(true, `length ${len}`)
    }
  })

  it('frames a message with a zero flag and its length as 4 bytes big-endian', () => {
    for (const len of [0, 1, 255, 256, 65_535, 65_536, 1_000_000]) {
      const msg = Buffer.alloc(len, 7)
      const frame = grpcFrame(msg)
      expect(frame.length).to.equal(5 + len)
      expect(frame[0]).to.equal(0)
      expect(frame.readUInt32BE(1)).to.equal(len)
      expect(frame.subarray(5).equals(msg)).to.equal(true)
    }
  })
})
