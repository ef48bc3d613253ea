import { Buffer } from 'node:buffer'
import { expect } from 'chai'
import { DEFAULT_RETRY_ON, RETRY_CONDITIONS, isGrpcRetryable } from '../../lib/balancing/retry.js'
import {
  GrpcStatus,
  decodeGrpcMessage,
  encodeGrpcMessage,
  formatGrpcTimeout,
  grpcContentTypeFor,
  grpcKind,
  grpcStatusForProxyError,
  grpcStatusFromHttp,
  parseGrpcStatus,
  parseGrpcTimeout,
} from '../../lib/http/grpc/status.js'
import { Base64Decoder, Base64Encoder, trailerFrame } from '../../lib/http/grpc/web.js'
import { seededRandom } from '../support/random.js'

describe('gRPC status (pure)', () => {
  describe('grpcKind', () => {
    it('recognises every gRPC and gRPC-Web media type, in any case, with parameters', () => {
      const cases: [string, string][] = [
        ['application/grpc', 'grpc'],
        ['application/grpc+proto', 'grpc'],
        ['application/grpc+json', 'grpc'],
        ['application/grpc-web', 'grpc-web'],
        ['application/grpc-web+proto', 'grpc-web'],
        ['application/grpc-web-text', 'grpc-web-text'],
        ['application/grpc-web-text+proto', 'grpc-web-text'],
      ]
      for (const [type, kind] of cases) {
        for (const variant of [type, type.toUpperCase(), `${type}; charset=utf-8`, ` ${type} `]) expect(grpcKind(variant), variant).to.equal(kind)
      }
    })

    it('refuses look-alikes, other types and oversize values', () => {
      for (const type of [undefined, '', 'application/json', 'application/grpcx', 'application/grpc-', 'application/grpc-webx', 'application/grpc-web+json', 'application/grpc+', 'text/grpc', 'application/grpc+' + 'p'.repeat(300), `application/grpc;${' '.repeat(300)}`]) {
        expect(grpcKind(type), String(type)).to.equal(null)
      }
    })

    it('names the gRPC content-type a gRPC-Web one becomes', () => {
      expect(grpcContentTypeFor('application/grpc-web')).to.equal('application/grpc+proto')
      expect(grpcContentTypeFor('application/grpc-web-text+proto')).to.equal('application/grpc+proto')
    })
  })

  describe('the HTTP-to-gRPC table', () => {
    it('maps exactly the published statuses, and every other one to UNKNOWN', () => {
      const table: Record<number, number> = { 400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14 }
      for (let status = 100; status <= 999; status++) expect(grpcStatusFromHttp(status), String(status)).to.equal(table[status] ?? GrpcStatus.UNKNOWN)
    })

    it('gives each proxy-made failure the code the issue lists', () => {
      expect(grpcStatusForProxyError('ZP_ERR_NO_ENDPOINT', 503)).to.equal(14)
      expect(grpcStatusForProxyError('ZP_ERR_UPSTREAM_CONNECT', 502)).to.equal(14)
      expect(grpcStatusForProxyError('ZP_ERR_UPSTREAM_RESET', 502)).to.equal(14)
      expect(grpcStatusForProxyError('ZP_ERR_UPSTREAM_TIMEOUT', 504)).to.equal(4)
      expect(grpcStatusForProxyError('ZP_ERR_GRPC_DEADLINE', 504)).to.equal(4)
      expect(grpcStatusForProxyError('ZP_ERR_BODY_TOO_LARGE', 413)).to.equal(8)
      expect(grpcStatusForProxyError('ZP_ERR_NO_ROUTE', 404)).to.equal(12)
      expect(grpcStatusForProxyError('ZP_ERR_CLIENT_TIMEOUT', 408)).to.equal(4)
      expect(grpcStatusForProxyError('ZP_ERR_BAD_REQUEST', 400)).to.equal(13)
      expect(grpcStatusForProxyError('ZP_ERR_INTERNAL', 502)).to.equal(14)
    })
  })

  describe('grpc-status', () => {
    it('reads 0 to 16 and nothing else', () => {
      for (let n = 0; n <= 16; n++) expect(parseGrpcStatus(String(n))).to.equal(n)
      for (const v of [undefined, '', '17', '99', '100', '-1', '1.0', ' 1', '1 ', '0x1', '1'.repeat(400)]) expect(parseGrpcStatus(v), String(v)).to.equal(null)
    })
  })

  describe('grpc-timeout', () => {
    it('reads 1 to 8 digits with each unit', () => {
      const unit: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 }
      const random = seededRandom(27)
      for (const [u, ms] of Object.entries(unit)) {
        for (let i = 0; i < 200; i++) {
          const digits = String(Math.floor(random() * 10 ** (1 + Math.floor(random() * 8))))
          expect(parseGrpcTimeout(`${digits}${u}`)).to.be.closeTo(Number(digits) * ms, Number(digits) * ms * 1e-12)
        }
      }
      expect(parseGrpcTimeout('99999999H')).to.equal(99_999_999 * 3_600_000)
    })

    it('refuses everything that is not digits and one unit', () => {
      for (const v of ['', 'S', '123456789S', '-1S', '+1S', '1.5S', '1s', '1h', '1 S', ' 1S', '1S ', '1SS', '1', '0x10S', '１S', '1e3m', '10S\r\n']) expect(parseGrpcTimeout(v), JSON.stringify(v)).to.equal(null)
    })

    it('formats any time left so that it reads back as at least that much, within 8 digits', () => {
      const random = seededRandom(7)
      for (let i = 0; i < 5000; i++) {
        const ms = random() < 0.1 ? random() : random() ** 4 * 1e12
        const text = formatGrpcTimeout(ms)
        expect(text).to.match(/^[0-9]{1,8}[HMSmun]$/)
        const back = parseGrpcTimeout(text)!
        expect(back, `${ms} -> ${text}`).to.be.at.least(ms * (1 - 1e-9))
        // Never more than one step of the unit chosen beyond what was left.
        expect(back - ms, `${ms} -> ${text}`).to.be.at.most(parseGrpcTimeout(`1${text.slice(-1)}`)! * (1 + 1e-9))
      }
    })

    it('bounds hostile input to format', () => {
      for (const ms of [-1, -Infinity, Number.NaN, 0]) expect(formatGrpcTimeout(ms)).to.equal('1n')
      expect(formatGrpcTimeout(Infinity)).to.equal('99999999H')
      expect(formatGrpcTimeout(1e300)).to.equal('99999999H')
    })
  })

  describe('grpc-message', () => {
    it('percent-encodes exactly the bytes outside 0x20-0x7E and %, and decodes back', () => {
      const random = seededRandom(3)
      for (let i = 0; i < 2000; i++) {
        let s = ''
        const n = Math.floor(random() * 40)
        for (let j = 0; j < n; j++) s += String.fromCodePoint(random() < 0.7 ? Math.floor(random() * 0x80) : Math.floor(random() * 0xd7ff))
        const encoded = encodeGrpcMessage(s)
        expect(encoded).to.match(/^[\x20-\x7e]*$/)
        expect(encoded.replace(/%[0-9A-F]{2}/g, '')).to.not.include('%')
        expect(decodeGrpcMessage(encoded)).to.equal(s)
      }
    })

    it('cuts a long message and keeps a bad escape as it is', () => {
      expect(encodeGrpcMessage('x'.repeat(100_000)).length).to.equal(1024)
      expect(decodeGrpcMessage('100%')).to.equal('100%')
      expect(decodeGrpcMessage('%zz%4')).to.equal('%zz%4')
    })
  })

  describe('retry.on for gRPC', () => {
    it('retries a status only when its condition is listed; UNAVAILABLE by default', () => {
      const conditions: Record<number, string> = { 1: 'grpc-cancelled', 4: 'grpc-deadline-exceeded', 8: 'grpc-resource-exhausted', 14: 'grpc-unavailable' }
      for (let code = 0; code <= 16; code++) {
        expect(isGrpcRetryable({ on: [...RETRY_CONDITIONS], nonIdempotent: false }, code), String(code)).to.equal(code in conditions)
        expect(isGrpcRetryable({ on: DEFAULT_RETRY_ON, nonIdempotent: false }, code), String(code)).to.equal(code === 14)
        expect(isGrpcRetryable({ on: ['connect-failure', 'gateway-error'], nonIdempotent: true }, code)).to.equal(false)
      }
    })
  })
})

describe('gRPC-Web wire (pure)', () => {
  it('writes a trailer frame: 0x80, the length, then name: value lines', () => {
    const frame = trailerFrame(['grpc-status', '0', 'Grpc-Message', 'ok'])
    const text = 'grpc-status: 0\r\ngrpc-message: ok\r\n'
    expect(frame[0]).to.equal(0x80)
    expect(frame.readUInt32BE(1)).to.equal(text.length)
    expect(frame.subarray(5).toString('latin1')).to.equal(text)
  })

  it('encodes a stream in chunks of any size as one base64 text', () => {
    const random = seededRandom(11)
    for (let i = 0; i < 300; i++) {
      const data = Buffer.from(Array.from({ length: Math.floor(random() * 200) }, () => Math.floor(random() * 256)))
      const enc = new Base64Encoder()
      const parts: Buffer[] = []
      for (let at = 0; at < data.length; ) {
        const n = 1 + Math.floor(random() * 20)
        parts.push(enc.push(data.subarray(at, at + n)))
        at += n
      }
      parts.push(enc.end())
      expect(Buffer.concat(parts).toString('latin1')).to.equal(data.toString('base64'))
    }
  })

  it('decodes base64 split anywhere, padded pieces one after another included', () => {
    const random = seededRandom(12)
    for (let i = 0; i < 300; i++) {
      const pieces = Array.from({ length: 1 + Math.floor(random() * 4) }, () => Buffer.from(Array.from({ length: Math.floor(random() * 40) }, () => Math.floor(random() * 256))))
      const text = pieces.map((p) => p.toString('base64')).join('')
      const dec = new Base64Decoder()
      const out: Buffer[] = []
      for (let at = 0; at < text.length; ) {
        const n = 1 + Math.floor(random() * 9)
        out.push(dec.push(Buffer.from(text.slice(at, at + n), 'latin1')))
        at += n
      }
      out.push(dec.end())
      expect(Buffer.concat(out).equals(Buffer.concat(pieces))).to.equal(true)
    }
  })

  it('refuses text that is not base64', () => {
    for (const bad of ['QQ=A', 'Q===', '=QQQ', 'QQ Q', 'QQ\nQ', 'QQ*Q', 'QQQ', 'QQ==QQ']) {
      expect(() => {
        const d = new Base64Decoder()
        d.push(Buffer.from(bad, 'latin1'))
        d.end()
      }, bad).to.throw()
    }
  })
})
