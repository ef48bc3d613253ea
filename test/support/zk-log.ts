// Reads a ZooKeeper server's transaction log (dataDir/version-2/log.*): every change it applied, with
// the time its own clock gave it. What a test learns here is what the ensemble recorded, not what a
// client happened to see, and how late it saw it.
//
// Format (ZooKeeper's FileTxnLog, Jute encoding, big-endian): a 16-byte file header, then entries of
// checksum (8 bytes), length (4), the transaction (length bytes), and an end-of-record byte; a length
// of 0 is the preallocated zero padding after the last entry. A transaction starts with its header
// (client id 8, cxid 4, zxid 8, time 8, type 4) and, for create, delete and setData, the path first.

import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'

/** ZooDefs.OpCode values of the transactions read here. */
export const TXN = { create: 1, delete: 2, setData: 5, create2: 15 } as const

export interface Txn {
  readonly zxid: bigint
  /** The server's clock when it took the request (ms since the epoch). */
  readonly time: number
  readonly type: number
  /** The znode it changes (create, delete, setData). */
  readonly path?: string
  /** The data it writes (create, setData). */
  readonly data?: Buffer
}

/** Every transaction in the logs of `dataDir`, in zxid order. */
export function readTransactions(dataDir: string): Txn[] {
  const dir = path.join(dataDir, 'version-2')
  const files = readdirSync(dir)
    .filter((f) => f.startsWith('log.'))
    .sort((a, b) => (BigInt(`0x${a.slice(4)}`) < BigInt(`0x${b.slice(4)}`) ? -1 : 1))
  const out: Txn[] = []
  for (const f of files) {
    const buf = readFileSync(path.join(dir, f))
    let at = 16
    while (at + 12 <= buf.length) {
      const len = buf.readInt32BE(at + 8)
      if (len <= 0 || at + 12 + len + 1 > buf.length) break
      out.push(decode(buf.subarray(at + 12, at + 12 + len)))
      at += 12 + len + 1
    }
  }
  return out
}

function decode(t: Buffer): Txn {
  const zxid = t.readBigInt64BE(12)
  const time = Number(t.readBigInt64BE(20))
  const type = t.readInt32BE(28)
  if (type !== TXN.create && type !== TXN.create2 && type !== TXN.delete && type !== TXN.setData) return { zxid, time, type }
  const pathLen = t.readInt32BE(32)
  const znode = t.subarray(36, 36 + pathLen).toString('utf8')
  if (type === TXN.delete) return { zxid, time, type, path: znode }
  const dataAt = 36 + pathLen
  const dataLen = t.readInt32BE(dataAt)
  return { zxid, time, type, path: znode, data: dataLen < 0 ? Buffer.alloc(0) : Buffer.from(t.subarray(dataAt + 4, dataAt + 4 + dataLen)) }
}
