// HTTP/2 written frame by frame, for clients no library would be (node:http2 refuses to send an
// upper-case name or a CR in a value): frames (RFC 9113 §4.1), literal HPACK blocks (RFC 7541
// §6.2.2, no Huffman), and a reader that gathers the frames a peer sends back.

import { Buffer } from 'node:buffer'
import type net from 'node:net'

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')
export const DATA = 0
export const HEADERS = 1
export const RST_STREAM = 3
export const SETTINGS = 4
export const GOAWAY = 7
export const END_STREAM = 1
export const END_HEADERS = 4

export function frame(type: number, flags: number, streamId: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(streamId & 0x7fffffff, 5)
  return Buffer.concat([head, payload])
}

/** An HPACK integer with an n-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1
  if (value < max) return [first | value]
  const out = [first | max]
  value -= max
  while (value >= 128) {
    out.push((value % 128) + 128)
    value = Math.floor(value / 128)
  }
  out.push(value)
  return out
}

/** A header block of literal fields without indexing, no Huffman: any byte goes as it is. */
export function block(fields: readonly (readonly [string, string])[]): Buffer {
  const parts: Buffer[] = []
  for (const [name, value] of fields) {
    const n = Buffer.from(name, 'latin1')
    const v = Buffer.from(value, 'latin1')
    parts.push(Buffer.from([0x00, ...hpackInt(n.length, 7, 0)]), n, Buffer.from(hpackInt(v.length, 7, 0)), v)
  }
  return Buffer.concat(parts)
}

export interface Frame {
  readonly type: number
  readonly flags: number
  readonly streamId: number
  readonly payload: Buffer
}

/** Gathers the frames a peer sends on `socket` (after our preface: the peer sends no preface of its own). */
export function frameReader(socket: net.Socket): { readonly frames: Frame[]; readonly ended: () => boolean } {
  const frames: Frame[] = []
  let buf = Buffer.alloc(0)
  let ended = false
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3)
      if (buf.length < 9 + len) break
      frames.push({ type: buf[3]!, flags: buf[4]!, streamId: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) })
      buf = buf.subarray(9 + len)
    }
  })
  socket.on('close', () => (ended = true))
  socket.on('error', () => (ended = true))
  return { frames, ended: () => ended }
}
