// Which service a request goes to, and with what path. Routes are tried most specific first: a
// Host match before none, then the longest path prefix, then the one with more method and header
// rules; ties in the order the config lists them. A route with no rule at all is the default
// route, tried last. The rules themselves (headers, rewrite, split) live in route-rules.ts.

import { hashUnit, headerTest, headerValue, parseHashKey, pickWeighted, rewritePath, routingPath } from '../route-rules.js'
import type { HashKey, HeaderRule, Rewrite, RouteRequest } from '../route-rules.js'

export type { HashKey, HeaderRule, Rewrite, RouteRequest } from '../route-rules.js'

export interface RouteMatch {
  readonly host?: string | undefined
  readonly pathPrefix?: string | undefined
  /** Exact method names (HTTP methods are case-sensitive). */
  readonly methods?: readonly string[] | undefined
  /** By header name (compared without case); every rule must hold. */
  readonly headers?: Readonly<Record<string, HeaderRule>> | undefined
}

export interface RouteSpec<T> {
  readonly match?: RouteMatch | undefined
  readonly rewrite?: Rewrite | undefined
  /** The services this route sends to, by relative weight (total > 0)... */
  readonly to?: readonly { readonly target: T; readonly weight: number }[] | undefined
  /** ...or the one service it sends to. */
  readonly target?: T
  /** Without it a split is drawn per request; with it a key always gets the same service. */
  readonly hashKey?: HashKey | undefined
}

/** The host/prefix/methods/header rules of a route, compiled once when the router is built. */
export class Route<T> {
  readonly host: string | null
  readonly prefix: string | null
  readonly #methods: readonly string[] | null
  readonly #headers: readonly { readonly name: string; readonly test: (v: string) => boolean }[]
  readonly #rewrite: Rewrite | null
  readonly #to: readonly { readonly target: T; readonly weight: number }[]
  readonly #total: number
  readonly #hashKey: HashKey | null
  readonly #random: () => number

  constructor(spec: RouteSpec<T>, random: () => number) {
    const m = spec.match ?? {}
    this.host = m.host === undefined ? null : hostName(m.host)
    // The config refuses a prefix not in routingPath's form; one it cannot read matches as written.
    this.prefix = m.pathPrefix === undefined ? null : (routingPath(m.pathPrefix) ?? m.pathPrefix)
    this.#methods = m.methods === undefined || m.methods.length === 0 ? null : m.methods
    this.#headers = Object.entries(m.headers ?? {}).map(([name, rule]) => ({ name: name.toLowerCase(), test: headerTest(rule) }))
    this.#rewrite = spec.rewrite === undefined || this.prefix === null || (spec.rewrite.prefix === undefined && spec.rewrite.stripPrefix !== true) ? null : spec.rewrite
    this.#to = spec.to ?? ('target' in spec ? [{ target: spec.target as T, weight: 1 }] : [])
    this.#total = this.#to.reduce((sum, t) => sum + t.weight, 0)
    if (!(this.#total > 0)) throw new TypeError('a route needs a total weight above 0')
    this.#hashKey = spec.hashKey ?? null
    this.#random = random
  }

  /** How many method and header rules it has: the third key of precedence. */
  get rules(): number {
    return (this.#methods === null ? 0 : 1) + this.#headers.length
  }

  matches(req: RouteRequest, host: string | null, path: string): boolean {
    if (this.host !== null && this.host !== host) return false
    if (this.prefix !== null && !underPrefix(path, this.prefix)) return false
    if (this.#methods !== null && !this.#methods.includes(req.method)) return false
    for (const h of this.#headers) {
      const v = headerValue(req, h.name)
      if (v === undefined || !h.test(v)) return false
    }
    return true
  }

  /** The service for this request: the only one, or the split's choice. */
  pick(req: RouteRequest): T {
    if (this.#to.length === 1) return this.#to[0]!.target
    let key: string | undefined
    if (this.#hashKey !== null) key = 'header' in this.#hashKey ? headerValue(req, this.#hashKey.header) : req.remoteAddress
    // No key (the header absent): the split is drawn for this request alone.
    const unit = key === undefined || key === '' ? this.#random() : hashUnit(key)
    return pickWeighted(this.#to, this.#total, unit)
  }

  /**
   * The request target to send upstream: `url` itself unless the route rewrites. A rewrite works
   * on the path the route matched (routingPath), so the prefix it cuts is the one that matched;
   * without one the instance gets the target as the client wrote it.
   */
  rewrite(url: string): string {
    if (this.#rewrite === null) return url
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    // Null only for a path match() refused, which never gets here.
    const normal = routingPath(path) ?? path
    return rewritePath(normal === path ? url : normal + url.slice(path.length), this.prefix!, this.#rewrite)
  }
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

const ENCODED_SLASH = /%2f/i
const ENCODED_SLASH_ALL = /%2f/gi
/** A `.` or `..` segment once an encoded slash is read as a `/` (routingPath decoded the dots). */
const DOT_AMID_SLASHES = /(?:\/|%2F)\.{1,2}(?=\/|%2F|$)/

export class Router<T> {
  readonly #routes: readonly Route<T>[]

  /** `random` draws the split of routes without a hash key (deps.random in the proxy). */
  constructor(specs: readonly RouteSpec<T>[], random: () => number = Math.random) {
    const routes = specs.map((s) => new Route(s, random))
    // Array.prototype.sort is stable: ties keep the config's order.
    routes.sort((a, b) => Number(b.host !== null) - Number(a.host !== null) || (b.prefix?.length ?? 0) - (a.prefix?.length ?? 0) || b.rules - a.rules)
    this.#routes = routes
  }

  /**
   * The first route (in precedence order) that `req` satisfies, or null: also for a path servers
   * would read in ways that differ (routingPath), and for one whose encoded slash (`%2F`) would
   * lead elsewhere read as a `/` (as nginx and Go's decoded-path routers read it) than read as a
   * character (as Envoy, Node and Go's ServeMux since 1.22 do): `/api%2Fx` is no route at all when
   * a route has `/api`, while `/api/a%2Fb` goes to that route either way.
   */
  match(req: RouteRequest): Route<T> | null {
    const url = req.url
    const q = url.indexOf('?')
    const raw = q === -1 ? url : url.slice(0, q)
    const path = routingPath(raw)
    if (path === null) return null
    const host = hostName(req.host)
    const route = this.#first(req, host, path)
    if (raw.indexOf('%') !== -1 && ENCODED_SLASH.test(raw)) {
      // Read with each %2F as a `/` (parameters' too: nginx does not drop them), the path must
      // go to the same route, and what the route keeps of it (a rewrite's rest) must hold no dot
      // segment that such a server would resolve, above the rewrite's replacement.
      const slashed = routingPath(raw.replace(ENCODED_SLASH_ALL, '/'))
      if (slashed === null || this.#first(req, host, slashed) !== route || DOT_AMID_SLASHES.test(path)) return null
    }
    return route
  }

  #first(req: RouteRequest, host: string | null, path: string): Route<T> | null {
    for (const r of this.#routes) if (r.matches(req, host, path)) return r
    return null
  }

  /** The service `req` goes to (a split drawn), or null. */
  route(req: RouteRequest): T | null {
    return this.match(req)?.pick(req) ?? null
  }
}

/** What the router needs of a service's config (lib/config.ts ServiceConfig has it). */
export interface ServiceRoutes {
  readonly name: string
  readonly match?: RouteMatch | undefined
  readonly routes?:
    | readonly {
        readonly match?: RouteMatch | undefined
        readonly rewrite?: Rewrite | undefined
        readonly to?: readonly { readonly service: string; readonly weight: number }[] | undefined
        /** `header:<name>` or `client-address`. */
        readonly hashKey?: string | undefined
      }[]
    | undefined
}

/**
 * The routes of a list of services' configs: each service's `match` (a route to itself), then its
 * `routes`; a service with neither is the default route; `routes: []` gives it none (it is reached
 * through other routes' `to`). `target` finds the running service of a name; the config has
 * checked that every name in a `to` is one of its services.
 */
export function routesOf<T>(configs: readonly ServiceRoutes[], target: (name: string) => T | undefined): RouteSpec<T>[] {
  const find = (name: string): T => {
    const t = target(name)
    if (t === undefined) throw new TypeError(`route to unknown service "${name}"`)
    return t
  }
  const specs: RouteSpec<T>[] = []
  for (const c of configs) {
    const self = [{ target: find(c.name), weight: 1 }]
    if (c.match !== undefined || c.routes === undefined) specs.push({ match: c.match, to: self })
    for (const r of c.routes ?? []) {
      const hashKey = r.hashKey === undefined ? undefined : parseHashKey(r.hashKey)
      if (hashKey === null) throw new TypeError(`bad hash key "${r.hashKey}"`)
      const to = r.to?.map((t) => ({ target: find(t.service), weight: t.weight }))
      specs.push({ match: r.match, rewrite: r.rewrite, hashKey, to: to ?? self })
    }
  }
  return specs
}
