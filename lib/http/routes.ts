// Which service a request goes to: the most specific `match` wins (a Host match before none, then
// the longest path prefix), otherwise the default service (the one without `match`), otherwise none.

export interface RouteMatch {
  readonly host?: string | undefined
  readonly pathPrefix?: string | undefined
}

interface Route<T> {
  readonly host: string | null
  readonly prefix: string | null
  readonly target: T
}

/** The Host header's name part, lower-cased, port dropped (IPv6 literals keep their brackets off). */
export function hostName(header: string | undefined): string | null {
  if (header === undefined || header === '') return null
  const h = header.trim().toLowerCase()
  if (h.startsWith('[')) {
    const end = h.indexOf(']')
    return end > 0 ? h.slice(1, end) : h
  }
  const colon = h.indexOf(':')
  const name = colon === -1 ? h : h.slice(0, colon)
  return name.endsWith('.') ? name.slice(0, -1) : name
}

/** True when `path` is `prefix` or lies below it on a segment boundary (`/api` has `/api/x`, not `/apix`). */
export function underPrefix(path: string, prefix: string): boolean {
  if (prefix === '/' || path === prefix) return true
  if (!path.startsWith(prefix)) return false
  return prefix.endsWith('/') || path.charCodeAt(prefix.length) === 47 /* '/' */
}

export class Router<T> {
  readonly #routes: readonly Route<T>[]
  readonly #fallback: T | null

  constructor(entries: readonly { readonly match?: RouteMatch | undefined; readonly target: T }[]) {
    const routes: Route<T>[] = []
    let fallback: T | null = null
    for (const e of entries) {
      if (e.match === undefined || (e.match.host === undefined && e.match.pathPrefix === undefined)) {
        fallback ??= e.target
        continue
      }
      routes.push({
        host: e.match.host === undefined ? null : hostName(e.match.host),
        prefix: e.match.pathPrefix ?? null,
        target: e.target,
      })
    }
    routes.sort((a, b) => Number(b.host !== null) - Number(a.host !== null) || (b.prefix?.length ?? 0) - (a.prefix?.length ?? 0))
    this.#routes = routes
    this.#fallback = fallback
  }

  route(hostHeader: string | undefined, url: string): T | null {
    if (this.#routes.length === 0) return this.#fallback
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    const host = hostName(hostHeader)
    for (const r of this.#routes) {
      if (r.host !== null && r.host !== host) continue
      if (r.prefix !== null && !underPrefix(path, r.prefix)) continue
      return r.target
    }
    return this.#fallback
  }
}
