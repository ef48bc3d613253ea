// gRPC-Web's wire pieces (grpc/grpc doc/PROTOCOL-WEB.md), pure: the trailer frame (flag 0x80,
// then `name: value\r\n` lines, as an HTTP/1.1 header block), and base64 both ways for
// `application/grpc-web-text`, streamed so a server-streaming answer goes out message by message.

import { Buffer } from 'node:buffer'
import { ProxyError } from '../../errors.js'

/** The flag byte of a frame that carries trailers instead of a message. */
export const TRAILER_FLAG = 0x80

/** A trailer frame for [name, value, ...]: one byte of flags, four of length (big-endian), the lines. */
export function trailerFrame(trailers: readonly string[]): Buffer {
  let text = ''
  for (let i = 0; i + 1 < trailers.length; i += 2) text += `${trailers[i]!.toLowerCase()}: ${trailers[i + 1]!}\r\n`
  const body = Buffer.from(text, 'latin1')
  const out = Buffer.allocUnsafe(5 + body.length)
  out[0] = TRAILER_FLAG
  out.writeUInt32BE(body.length, 1)
  body.copy(out, 5)
  return out
}

/**
 * Base64 of a stream of chunks as one base64 text: whole 3-byte groups go out as they come, the
 * 0 to 2 bytes left wait for the next chunk, and only the end pads. (Padding in mid-stream is
 * allowed by PROTOCOL-WEB.md, but not every client decodes it; one text is what all of them take.)
 */
export class Base64Encoder {
  #carry: Buffer | null = null

  push(chunk: Buffer): Buffer {
    const data = this.#carry === null ? chunk : Buffer.concat([this.#carry, chunk])
    const whole = data.length - (data.length % 3)
    this.#carry = whole === data.length ? null : Buffer.from(data.subarray(whole))
    return Buffer.from(data.subarray(0, whole).toString('base64'), 'latin1')
  }

  end(): Buffer {
    const rest = this.#carry
    this.#carry = null
    return rest === null ? Buffer.alloc(0) : Buffer.from(rest.toString('base64'), 'latin1')
  }
}

/** Thrown for text that is not base64: the client's fault, a bad request (INTERNAL to a gRPC client). */
export class Base64Error extends ProxyError {
  constructor(message: string) {
    super('ZP_ERR_BAD_REQUEST', message, { statusCode: 400 })
    this.name = 'Base64Error'
  }
}

const B64 = /^[A-Za-z0-9+/]*$/

/**
 * Base64 text in chunks of any size to bytes. Each 4-character group is decoded on its own when it
 * carries padding, so several padded pieces one after the other (what a client that encodes each
 * message apart sends) decode as their concatenation. Whitespace is not allowed (it is not base64
 * the spec names); anything else outside the alphabet is a Base64Error.
 */
export class Base64Decoder {
  #carry = ''

  push(chunk: Buffer): Buffer {
    const text = this.#carry + chunk.toString('latin1')
    const whole = text.length - (text.length % 4)
    this.#carry = text.slice(whole)
    return decodeGroups(text.slice(0, whole))
  }

  /** What is left must be nothing: a stream that stops inside a group is not base64. */
  end(): Buffer {
    if (this.#carry.length > 0) throw new Base64Error('base64 body ends inside a 4-character group')
    return Buffer.alloc(0)
  }
}

function decodeGroups(text: string): Buffer {
  const parts: Buffer[] = []
  let from = 0
  while (from < text.length) {
    const pad = text.indexOf('=', from)
    // The run up to the first padded group decodes at once; that group, then on after it.
    const groupEnd = pad < 0 ? text.length : pad - (pad % 4) + 4
    const run = text.slice(from, groupEnd)
    const padAt = run.indexOf('=')
    const letters = padAt < 0 ? run : run.slice(0, padAt)
    const padding = padAt < 0 ? '' : run.slice(padAt)
    if (!B64.test(letters) || !/^={0,2}$/.test(padding) || (padding.length > 0 && padding.length + (letters.length % 4) !== 4)) {
      throw new Base64Error('body is not base64')
    }
    parts.push(Buffer.from(letters, 'base64'))
    from = groupEnd
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}
