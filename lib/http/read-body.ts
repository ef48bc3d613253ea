// Reading a request body whole, so that it can be sent again on a retry (retry.bufferBytes).

import type { Buffer } from 'node:buffer'
import type { Readable } from 'node:stream'
import { clientGone } from '../errors.js'
import type { HeldBody } from './h1/upstream.js'

type ReadBody = { readonly complete: true; readonly body: HeldBody } | { readonly complete: false; readonly prefix: Buffer[] }

/**
 * Reads a body whole when it fits in `limit` bytes; otherwise stops (the request paused) and hands
 * back what it read, to be sent ahead of the rest. Rejects if the client goes away first.
 */
export function readBody(req: Readable, limit: number): Promise<ReadBody> {
  return new Promise((resolve, reject) => {
    // Failed before anyone read it (too slow, too large, malformed): its error was emitted already.
    if (req.destroyed && !req.readableEnded) {
      reject(req.errored ?? clientGone('client aborted the request body'))
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    const onData = (c: Buffer) => {
      chunks.push(c)
      size += c.length
      if (size <= limit) return
      req.pause()
      detach()
      resolve({ complete: false, prefix: chunks })
    }
    const onEnd = () => {
      detach()
      // Kept as read: joining them would copy the body once more (at 64 KiB bodies that extra
      // external memory alone set off a mark-compact every 70-90 ms).
      resolve({ complete: true, body: chunks })
    }
    const onError = (err: Error) => {
      detach()
      reject(err)
    }
    const detach = () => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
    }
    req.on('data', onData)
    req.once('end', onEnd)
    req.once('error', onError)
  })
}
