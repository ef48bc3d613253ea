// TLS renegotiation toward clients (issue 21 item 7): refused as nginx refuses it, the connection
// closed at the first attempt (it used to go on for thousands), and everyone else still served.

import { expect } from 'chai'
import { readFileSync } from 'node:fs'
import tls from 'node:tls'
import type { Exchange } from '../../lib/http/h1/exchange.js'
import { Router } from '../../lib/http/routes.js'
import { ProxyServer } from '../../lib/http/server.js'
import type { Service } from '../../lib/http/service.js'
import { useCerts } from '../support/certs.js'
import { recordingLogger, useClosers } from '../support/helpers.js'

const ok = { handle: (ex: Exchange, done: () => void) => (ex.end('fine'), done()) } as unknown as Service

/** A TLS 1.2 client (1.3 has no renegotiation) that trusts the test CA. */
async function connect(port: number, ca: Buffer): Promise<tls.TLSSocket> {
  const sock = tls.connect({ host: '127.0.0.1', port, ca, maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] })
  sock.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    sock.once('secureConnect', () => resolve())
    sock.once('close', () => reject(new Error('closed before the handshake ended')))
  })
  return sock
}

/** One GET on `sock`, read until its whole answer (Content-Length 4: "fine") is in. */
function get(sock: tls.TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = ''
    const onData = (d: Buffer) => {
      out += d.toString('latin1')
      if (out.endsWith('\r\n\r\nfine')) {
        sock.off('data', onData)
        resolve(out)
      }
    }
    sock.on('data', onData)
    sock.once('close', () => reject(new Error(`closed after ${JSON.stringify(out)}`)))
    sock.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n')
  })
}

describe('TLS renegotiation', () => {
  const closers = useClosers()
  // Removed after, even when a before-all failed (useCerts).
  const certs = useCerts()

  it('closes the connection of a client that renegotiates, says so once, and keeps serving the others', async () => {
    const logger = recordingLogger()
    const server = new ProxyServer(new Router([{ target: ok }]), logger, { tls: { cert: readFileSync(certs.cert), key: readFileSync(certs.key) } })
    closers.push(() => server.close(1_000))
    const { port } = await server.listen({ host: '127.0.0.1', port: 0 })
    const bystander = await connect(port, certs.ca)
    closers.push(() => bystander.destroy())
    expect(await get(bystander)).to.match(/^HTTP\/1\.1 200 /)
    // Several attackers in a row, each asking once: every one of them is cut at its first try.
    for (let i = 0; i < 3; i++) {
      const sock = await connect(port, certs.ca)
      closers.push(() => sock.destroy())
      expect(await get(sock)).to.match(/^HTTP\/1\.1 200 /)
      const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()))
      let renegotiated = false
      const asked = sock.renegotiate({ rejectUnauthorized: true }, (err) => {
        if (err === null || err === undefined) renegotiated = true
      })
      expect(asked, 'the client could ask (TLS 1.2)').to.equal(true)
      await closed
      expect(renegotiated).to.equal(false)
      // A fresh connection and the one open all along are still served.
      const fresh = await connect(port, certs.ca)
      closers.push(() => fresh.destroy())
      expect(await get(fresh)).to.match(/^HTTP\/1\.1 200 /)
      expect(await get(bystander)).to.match(/^HTTP\/1\.1 200 /)
    }
    const refused = logger.lines.filter((l) => /renegotiation refused/.test(l.msg))
    expect(refused.map((l) => (l.obj as { code: string }).code)).to.deep.equal(Array(3).fill('ERR_TLS_RENEGOTIATION_DISABLED'))
  })
})
