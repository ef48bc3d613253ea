// One way to write an address for people and for Host headers, at the lowest layer: discovery,
// config, the request path and the logs all print instances with it.

/** `host:port`, an IPv6 address in brackets (`[::1]:8080`, RFC 3986 §3.2.2; Go's net.JoinHostPort). */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
