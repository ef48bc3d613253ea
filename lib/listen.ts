// Binding a listener, for every listener the proxy has (the client side's and the admin's): here,
// below both the http and the operations layer, so neither imports the other for it.

import type { AddressInfo, Server } from 'node:net'

/** Binds `server` to `host`:`port`; rejects (EADDRINUSE...) instead of emitting 'error'. */
export function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve(server.address() as AddressInfo)
    })
  })
}
