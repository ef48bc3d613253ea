// Nothing a ZooKeeper server (or whatever answers at its address) sends can end the process: the
// client library is patched (patches/node-zookeeper-client+1.1.3.patch) so that a frame it cannot
// read drops that connection and reconnects, an error code it does not know is an error for the
// call, and a half-read frame never outlives its connection. Two harnesses:
//  - a scripted server on loopback that answers the handshake and then each kind of bad frame;
//  - a relay in front of a real ZooKeeper that injects bad bytes into a live proxy's connection,
//    between frames or by cutting one in half, while the proxy keeps serving its instances.

import { expect } from 'chai'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { ZkSession } from '../../lib/discovery/zk-session.js'
import { silentLogger } from '../../lib/log.js'
import type { Logger } from '../../lib/log.js'
import { deadPort, makeConfig, putNode, recordingLogger, send, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'
import type { Closers } from '../support/helpers.js'

const XID_PING = -2

function frame(body: Buffer): Buffer {
  const len = Buffer.alloc(4)
  len.writeInt32BE(body.length)
  return Buffer.concat([len, body])
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}

function connectResponse(sessionTimeoutMs: number): Buffer {
  const sessionId = Buffer.from('0123456789abcdef', 'hex')
  return frame(Buffer.concat([int32(0), int32(sessionTimeoutMs), sessionId, int32(16), Buffer.alloc(16, 7)]))
}

function replyHeader(xid: number, err: number): Buffer {
  return Buffer.concat([int32(xid), Buffer.alloc(8), int32(err)])
}

function children(names: readonly string[]): Buffer {
  const parts = [int32(names.length), ...names.flatMap((n) => [int32(Buffer.byteLength(n)), Buffer.from(n)])]
  return Buffer.concat([...parts, Buffer.alloc(68)]) // the Stat that follows: 68 bytes
}

interface Request {
  readonly xid: number
  readonly type: number
}

/**
 * A TCP listener on loopback whose connections `onConnection` handles, each one (and the
 * listener) closed by `closers`. Resolves with its port.
 */
async function listenTracked(closers: Closers, onConnection: (socket: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    onConnection(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  )
  return (server.address() as AddressInfo).port
}

/**
 * A ZooKeeper look-alike: it answers the handshake, pings and close, and hands every other request
 * to `answer` with the connection's number (1 for the first).
 */
async function scriptedServer(closers: Closers, answer: (socket: net.Socket, req: Request, connection: number) => void) {
  let connections = 0
  const port = await listenTracked(closers, (socket) => {
    const n = ++connections
    let pending = Buffer.alloc(0)
    let handshaken = false
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      while (pending.length >= 4 && pending.length >= 4 + pending.readInt32BE(0)) {
        const body = pending.subarray(4, 4 + pending.readInt32BE(0))
        pending = pending.subarray(4 + body.length)
        if (!handshaken) {
          handshaken = true
          socket.write(connectResponse(4000))
          continue
        }
        const req = { xid: body.readInt32BE(0), type: body.readInt32BE(4) }
        if (req.xid === XID_PING || req.type === -11) socket.write(frame(replyHeader(req.xid, 0)))
        else if (!socket.destroyed) answer(socket, req, n)
      }
    })
  })
  return {
    port,
    get connections() {
      return connections
    },
  }
}

function session(closers: Closers, port: number, logger: Logger = silentLogger): ZkSession {
  const s = new ZkSession({ connect: `127.0.0.1:${port}`, sessionTimeoutMs: 4000, callTimeoutMs: 2000, logger })
  s.start()
  closers.push(() => s.close())
  return s
}

describe('ZooKeeper wire: nothing a server sends can end the process', function () {
  const closers = useClosers()

  for (const [code, name] of [
    [10000, 'UNKNOWN_10000'],
    [-127, 'THROTTLED_OP'],
    [-125, 'QUOTA_EXCEEDED'],
    [-122, 'REQUEST_TIMEOUT'],
    [-2147483648, 'UNKNOWN_-2147483648'],
  ] as const) {
    it(`fails only the call answered with error code ${code} (${name}), and the session goes on`, async () => {
      // The first call gets the error; the next is answered, on the same connection.
      let first = true
      const guarded = await scriptedServer(closers, (socket, req) => {
        if (first) {
          first = false
          socket.write(frame(replyHeader(req.xid, code)))
        } else socket.write(frame(Buffer.concat([replyHeader(req.xid, 0), children(['b'])])))
      })
      const s = session(closers, guarded.port)
      const err = await s.getChildren('/svc').then(
        () => null,
        (e: unknown) => e as { getCode?: () => number; name?: string },
      )
      expect(err?.getCode?.()).to.equal(code)
      expect(err?.name).to.equal(name)
      expect(await s.getChildren('/svc')).to.deep.equal(['b'])
      expect(guarded.connections).to.equal(1)
    })
  }

  const badFrames: Record<string, (xid: number) => Buffer> = {
    'an empty frame': () => int32(0),
    'a frame shorter than a reply header': () => frame(Buffer.from([1, 2])),
    'a negative length': () => Buffer.concat([int32(-5), Buffer.alloc(16)]),
    'a length beyond any reply (2^31 - 1)': () => Buffer.concat([int32(0x7fffffff), Buffer.alloc(64)]),
    'a reply whose payload does not deserialize (1000 children announced, none sent)': (xid) => frame(Buffer.concat([replyHeader(xid, 0), int32(1000)])),
    'a child name longer than its frame': (xid) => frame(Buffer.concat([replyHeader(xid, 0), int32(1), int32(1_000_000), Buffer.from('x')])),
    'a reply nobody asked for (xid out of order)': (xid) => frame(Buffer.concat([replyHeader(xid + 1000, 0), children(['x'])])),
  }

  for (const [what, bad] of Object.entries(badFrames)) {
    it(`drops the connection on ${what} and reconnects, then reads the next server's answer whole`, async () => {
      const server = await scriptedServer(closers, (socket, req, n) => {
        if (n === 1) socket.write(bad(req.xid))
        else socket.write(frame(Buffer.concat([replyHeader(req.xid, 0), children(['after-reconnect'])])))
      })
      const s = session(closers, server.port)
      // The call the bad frame answered is lost with its connection, at once, not at its deadline.
      const lost = await s.getChildren('/svc').then(
        () => null,
        (e: unknown) => e as { getCode?: () => number },
      )
      expect(lost?.getCode?.(), 'CONNECTION_LOSS').to.equal(-4)
      const listed = await waitFor(async () => {
        const got = await s.getChildren('/svc').catch(() => null)
        return got?.[0] === 'after-reconnect' ? got : null
      }, 'an answer read whole after the bad frame', 15_000)
      expect(listed).to.deep.equal(['after-reconnect'])
    })
  }

  it('says which server sent what could not be read', async () => {
    const server = await scriptedServer(closers, (socket, req, n) => {
      if (n === 1) socket.write(int32(-5))
      else socket.write(frame(Buffer.concat([replyHeader(req.xid, 0), children([])])))
    })
    const logger = recordingLogger()
    const s = session(closers, server.port, logger)
    await s.getChildren('/svc').catch(() => null)
    const line = await waitFor(() => logger.lines.find((l) => l.msg.startsWith('zookeeper sent what is not a ZooKeeper reply')), 'the warn line')
    expect(line.level).to.equal('warn')
    expect(line.obj).to.include({ server: `127.0.0.1:${server.port}`, err: 'Error: reply frame of -5 bytes' })
  })

  it('names the server and the error when it cannot connect', async () => {
    const port = await deadPort(closers)
    const logger = recordingLogger()
    const s = new ZkSession({ connect: `127.0.0.1:${port}`, sessionTimeoutMs: 4000, watchdogMs: 200, logger })
    s.start()
    closers.push(() => s.close())
    const line = await waitFor(() => logger.lines.find((l) => l.msg.startsWith('zookeeper handshake not answered')), 'the warn line')
    expect(line.msg).to.equal(`zookeeper handshake not answered by 127.0.0.1:${port} (ECONNREFUSED), trying the next server`)
    expect(line.obj).to.include({ server: `127.0.0.1:${port}`, lastError: 'ECONNREFUSED' })
  })

  it('ignores a notification of a type it does not know (a newer server\'s), on the same connection', async () => {
    const server = await scriptedServer(closers, (socket, req) => {
      socket.write(frame(Buffer.concat([replyHeader(-1, 0), int32(99), int32(3), int32(1), Buffer.from('/')])))
      socket.write(frame(Buffer.concat([replyHeader(req.xid, 0), children(['kept'])])))
    })
    const s = session(closers, server.port)
    expect(await s.getChildren('/svc')).to.deep.equal(['kept'])
    expect(server.connections).to.equal(1)
  })

  it('never parses a half frame left by a dropped connection against the next connection\'s bytes', async () => {
    const server = await scriptedServer(closers, (socket, req, n) => {
      const whole = frame(Buffer.concat([replyHeader(req.xid, 0), children(['whole'])]))
      if (n === 1) {
        // Half a frame, then the connection ends: the rest never comes.
        socket.write(whole.subarray(0, 9))
        socket.destroy()
      } else socket.write(whole)
    })
    const s = session(closers, server.port)
    await s.getChildren('/svc').catch(() => null)
    const listed = await waitFor(() => s.getChildren('/svc').catch(() => null), 'the answer on the next connection', 15_000)
    expect(listed).to.deep.equal(['whole'])
    // The second connection's handshake was read as a handshake, not as the rest of the cut frame.
    expect(server.connections).to.equal(2)
  })

  it('survives a handshake answer that cannot be read, and connects on the next attempt', async () => {
    let attempts = 0
    const port = await listenTracked(closers, (socket) => {
      attempts++
      socket.once('data', () => {
        if (attempts === 1) socket.write(frame(Buffer.from([0, 0, 0]))) // a ConnectResponse of 3 bytes
        else socket.write(connectResponse(4000))
      })
    })
    const s = session(closers, port)
    await waitFor(() => s.state === 'connected', 'a session after a bad handshake', 15_000)
    expect(attempts).to.be.greaterThanOrEqual(2)
  })
})

describe('ZooKeeper wire: a live proxy keeps serving through bad bytes from its server', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  /**
   * A relay to the real ZooKeeper that forwards the server's bytes frame by frame, so bad bytes can
   * be put between two frames (`inject`) or a frame cut in half (`cut`) on the live connection.
   */
  async function relay(zkPort: number) {
    let toClient: net.Socket | null = null
    let connections = 0
    let pendingCut = false
    // Each client's connection to the real server goes with it (listenTracked closes the clients).
    const port = await listenTracked(closers, (client) => {
      connections++
      const upstream = net.connect(zkPort, '127.0.0.1')
      upstream.on('error', () => {})
      for (const s of [client, upstream])
        s.on('close', () => {
          client.destroy()
          upstream.destroy()
        })
      toClient = client
      client.pipe(upstream)
      let buf = Buffer.alloc(0)
      upstream.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk])
        while (buf.length >= 4 && buf.length >= 4 + buf.readInt32BE(0)) {
          const whole = buf.subarray(0, 4 + buf.readInt32BE(0))
          buf = buf.subarray(whole.length)
          if (pendingCut && whole.length > 8) {
            pendingCut = false
            client.write(whole.subarray(0, Math.floor(whole.length / 2)))
            client.destroy()
            upstream.destroy()
            return
          }
          client.write(whole)
        }
      })
    })
    return {
      port,
      get connections() {
        return connections
      },
      inject(bytes: Buffer): void {
        toClient?.write(bytes)
      },
      cutNextFrame(): void {
        pendingCut = true
      },
    }
  }

  it('keeps its instances while the connection is dropped and rebuilt, and sees changes after', async () => {
    const path = uniquePath('wire')
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    closers.push(() => a.close(), () => b.close())
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: a.port })
    const zkPort = Number(ctx.zk.connectString.split(',')[0]!.split(':')[1])
    const r = await relay(zkPort)
    const proxy = await startProxy(await makeConfig(`127.0.0.1:${r.port}`, [{ name: 'wire', path }]))
    closers.push(() => proxy.close())
    expect((await send(proxy.port)).body).to.equal('a')

    const cases: [string, () => void][] = [
      ['a negative frame length', () => r.inject(int32(-1))],
      ['an unknown notification', () => r.inject(frame(Buffer.concat([replyHeader(-1, 0), int32(77), int32(3), int32(1), Buffer.from('/')])))],
      ['an empty frame', () => r.inject(int32(0))],
      ['a frame cut by the connection ending', () => r.cutNextFrame()],
    ]
    let seen = r.connections
    for (const [what, hurt] of cases) {
      // A cut lands in the next frame the server sends (a ping's answer at the latest); the proxy
      // answers from its instances all the while.
      hurt()
      const reply = await send(proxy.port)
      expect(reply.status, what).to.equal(200)
      if (what !== 'an unknown notification') {
        await waitFor(() => r.connections > seen, `a new connection after ${what}`, 15_000)
        seen = r.connections
      }
    }
    // The session and its watches survived: a new instance shows up.
    await putNode(ctx.admin, `${path}/b`, { host: '127.0.0.1', port: b.port })
    await waitFor(async () => (await send(proxy.port)).body === 'b', 'the instance added after the bad frames', 15_000)
  })
})
