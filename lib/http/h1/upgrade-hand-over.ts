// An Upgrade request's socket leaving the front for whoever tunnels it (../websocket.ts), and the
// answer when that handler throws. The connection detaches its own listeners and parser first
// (connection.ts), as node:http's server does before it emits 'upgrade'.

import type { Buffer } from 'node:buffer'
import type { Socket } from 'node:net'
import type { Exchange } from './exchange.js'

/** Who takes an upgraded socket (H1Handlers.upgrade). */
export interface UpgradeTarget {
  upgrade(ex: Exchange, socket: Socket, head: Buffer): void
}

/** Hands `socket`, with the bytes after the request's head, to `target`; `failed` is told what it threw. */
export function handOver(socket: Socket, ex: Exchange, head: Buffer, target: UpgradeTarget, failed: (err: unknown) => void): void {
  // Not flowing until the tunnel reads it (node:http's server does the same: readableFlowing =
  // null before 'upgrade').
  socket.pause()
  const written = socket.bytesWritten
  try {
    target.upgrade(ex, socket, head)
  } catch (err) {
    failed(err)
    answerFailedUpgrade(socket, written)
  }
}

/** The upgrade handler, which owns the raw socket, threw: a 502 if it wrote nothing yet, else a cut. */
function answerFailedUpgrade(socket: Socket, writtenBefore: number): void {
  if (socket.destroyed) return
  if (socket.bytesWritten !== writtenBefore || !socket.writable) {
    socket.destroy()
    return
  }
  socket.once('finish', () => socket.destroy())
  socket.end('HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n', 'latin1')
}
