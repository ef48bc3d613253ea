// The front's HTTPS listener: a TLS server whose sockets become connections only once their
// handshake is done, with renegotiation refused and handshakes in progress tracked for close().

import tls from 'node:tls'
import type { Socket } from 'node:net'

/** A TLS handshake must be done within this (Node's default is 120 s: a cheap way to hold sockets). */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000

/**
 * HTTPS only on this port; ALPN offers `alpn` in that order (a client that offers none of them is
 * refused in the handshake; one that offers no ALPN at all gets HTTP/1.1). Sockets still in their
 * handshake are kept in `handshaking` until it ends; `accept` gets the rest.
 */
export function tlsListener(secure: tls.SecureContextOptions, alpn: readonly string[], handshaking: Set<Socket>, accept: (socket: Socket) => void): tls.Server {
  // allowHalfOpen: a client that sends its request and then shuts down its sending side still
  // gets its answer (node:http does the same).
  const server = tls.createServer(
    { ...secure, allowHalfOpen: true, noDelay: true, ALPNProtocols: [...alpn], handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS },
    (socket) => {
      handshaking.delete(socket)
      // Client-initiated renegotiation refused, as nginx does: each one is a full handshake's
      // CPU for the server (CVE-2011-1473). TLS 1.3 has none; this is for 1.2 clients.
      socket.disableRenegotiation()
      accept(socket)
    },
  )
  // Sockets still in their handshake are no Connection yet: tracked so close() cuts them too
  // (a client that refused our certificate leaves a half-open one behind).
  server.on('connection', (raw: Socket) => {
    handshaking.add(raw)
    raw.once('close', () => handshaking.delete(raw))
  })
  // A failed handshake (plain HTTP, an untrusting client) is the client's problem: its socket
  // is closed, nothing else happens (with a listener here, closing it is ours to do).
  server.on('tlsClientError', (_err, socket) => socket.destroy())
  return server
}
