// Decoding a service child znode into an endpoint. Four layouts are accepted, tried in this order:
//   1. ours:       {"host":"10.0.0.5","port":8080,"weight":2,"state":"up","scheme":"https","protocol":"h2"}
//   2. Curator x-discovery ServiceInstance (also Spring Cloud Zookeeper):
//                  {"name":..,"id":..,"address":..,"port":..,"sslPort":..,"payload":..,"enabled":..}
//   3. Finagle/Aurora ServerSet member: {"serviceEndpoint":{"host":..,"port":..},"status":"ALIVE",..}
//   4. plain text `host:port`, or empty data with the child's own name being `host:port`.
//   5. Dubbo (issue 27): the child's name is a url-encoded provider URL, as Dubbo's ZookeeperRegistry
//      writes it under /dubbo/<interface>/providers/ (its data, Curator's default, is the
//      registering host's address, and is not read): tried first, by the name's shape.
// Anything else is rejected with a reason, never thrown. An instance reached over TLS carries
// `meta.tls: true` (ours: "scheme": "https" or "protocol": "h2"; Curator: an sslPort, which is then
// the port used). Ours may name the protocol spoken to the instance (`meta.protocol`, issue 26 §3);
// the other layouts cannot, and get the service's upstreamProtocol.
// Every number is bounded here, where it enters: ports are integers 1-65535 (else the child is
// skipped), a weight outside WEIGHT_MIN..WEIGHT_MAX is clamped into it and the instance kept with a
// `warning` (a weight that is not a number at all is skipped).

import { WEIGHT_MAX, WEIGHT_MIN, clampWeight } from './endpoint.js'
import type { Endpoint } from './endpoint.js'

export type DecodeResult = { ok: true; endpoint: Endpoint; warning?: string } | { ok: false; reason: string }

type Json = Record<string, unknown>

/** The most nesting and bytes an instance's own `meta` may have: it is kept for people, not routing. */
const META_MAX_DEPTH = 16
const META_MAX_BYTES = 4096

/**
 * The depth of a parsed JSON value, walked without recursion (JSON.parse builds 100,000 levels
 * happily; a recursive walk, JSON.stringify included, then overflows the stack), stopping as soon
 * as it passes `limit`.
 */
function depthOver(v: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[v, 1]]
  while (stack.length > 0) {
    const [x, d] = stack.pop()!
    if (x === null || typeof x !== 'object') continue
    if (d > limit) return true
    for (const child of Object.values(x)) stack.push([child, d + 1])
  }
  return false
}

/**
 * An instance's own `meta` as kept: at most META_MAX_DEPTH deep and META_MAX_BYTES as JSON, else a
 * warning and nothing kept. Unbounded, one 10 KB znode nested 5,000 deep ended every proxy (a
 * stack overflow comparing two lists), and 880 KB of it stalled the event loop on every update.
 */
function boundedMeta(v: Json): { meta?: Json; warning?: string } {
  if (depthOver(v, META_MAX_DEPTH)) return { warning: `meta nested deeper than ${META_MAX_DEPTH} levels, not kept` }
  if (JSON.stringify(v).length > META_MAX_BYTES) return { warning: `meta larger than ${META_MAX_BYTES} bytes as JSON, not kept` }
  return { meta: v }
}

/** A descriptive string from znode data (a Curator name or id), kept only when short. */
const shortString = (v: unknown): v is string => typeof v === 'string' && v.length <= 256

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** The protocols an instance may speak (transport.ts UpstreamProtocol). */
function isProtocol(v: unknown): v is 'h2' | 'h2c' | 'http/1.1' {
  return v === 'h2' || v === 'h2c' || v === 'http/1.1'
}

function validPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= 65535
}

function validHost(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= 253 && !/[\s/]/.test(v)
}

/**
 * A weight from znode data: a number, or a numeric string (Curator metadata is strings); null when
 * it is neither. Out of range (1e308, 1e999 which JSON reads as Infinity, -1) is not refused but
 * clamped by `ok`, so that one bad value costs its instance a warning, not its place.
 */
function readWeight(v: unknown): number | null | undefined {
  if (v === undefined || v === null) return undefined
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v
  return typeof n === 'number' && !Number.isNaN(n) ? n : null
}

function ok(key: string, host: string, port: number, weight: number, state: Endpoint['state'], meta: Json, metaWarning?: string): DecodeResult {
  // IPv6 literals arrive with or without brackets; keep them bare, the transport adds brackets.
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  const bounded = clampWeight(weight)
  const endpoint = Object.freeze({ key, host: bare, port, weight: bounded, state, meta: Object.freeze(meta) })
  const warnings = bounded === weight ? [] : [`weight ${weight} is outside ${WEIGHT_MIN}-${WEIGHT_MAX}, clamped to ${bounded}`]
  if (metaWarning !== undefined) warnings.push(metaWarning)
  return warnings.length === 0 ? { ok: true, endpoint } : { ok: true, endpoint, warning: warnings.join('; ') }
}

function decodeOurs(key: string, d: Json): DecodeResult {
  if (!validHost(d.host)) return { ok: false, reason: 'host must be a non-empty string' }
  if (!validPort(d.port)) return { ok: false, reason: 'port must be an integer 1-65535' }
  const weight = readWeight(d.weight)
  if (weight === null) return { ok: false, reason: `weight must be a number ${WEIGHT_MIN}-${WEIGHT_MAX}` }
  const state = d.state ?? 'up'
  if (state !== 'up' && state !== 'draining') return { ok: false, reason: 'state must be "up" or "draining"' }
  const scheme = d.scheme ?? 'http'
  if (scheme !== 'http' && scheme !== 'https') return { ok: false, reason: 'scheme must be "http" or "https"' }
  const protocol = d.protocol
  if (protocol !== undefined && !isProtocol(protocol)) return { ok: false, reason: 'protocol must be "h2", "h2c" or "http/1.1"' }
  // h2 is TLS and h2c plain TCP by definition (RFC 9113 §3): a scheme that says otherwise is a mistake, not a choice.
  if (protocol === 'h2' && d.scheme === 'http') return { ok: false, reason: 'protocol "h2" is TLS: scheme must be "https" or absent' }
  if (protocol === 'h2c' && scheme === 'https') return { ok: false, reason: 'protocol "h2c" is plain TCP: scheme must be "http" or absent' }
  const meta: Json = { format: 'zoo-proxy' }
  if (scheme === 'https' || protocol === 'h2') meta.tls = true
  if (protocol !== undefined) meta.protocol = protocol
  const own = isObject(d.meta) ? boundedMeta(d.meta) : {}
  if (own.meta !== undefined) meta.meta = own.meta
  return ok(key, d.host, d.port, weight ?? 1, state, meta, own.warning)
}

function decodeCurator(key: string, d: Json): DecodeResult {
  if (!validHost(d.address)) return { ok: false, reason: 'Curator address must be a non-empty string' }
  const tls = d.sslPort !== undefined && d.sslPort !== null
  if (tls && !validPort(d.sslPort)) return { ok: false, reason: 'Curator sslPort must be an integer 1-65535' }
  if (!tls && !validPort(d.port)) return { ok: false, reason: 'Curator port must be an integer 1-65535' }
  const payload = isObject(d.payload) ? d.payload : {}
  const metadata = isObject(payload.metadata) ? payload.metadata : {}
  const weight = readWeight(payload.weight ?? metadata.weight)
  if (weight === null) return { ok: false, reason: `Curator payload weight must be a number ${WEIGHT_MIN}-${WEIGHT_MAX}` }
  // `enabled: false` (Curator) and Spring's OUT_OF_SERVICE both mean: no new requests.
  const draining = d.enabled === false || metadata.instance_status === 'OUT_OF_SERVICE'
  const meta: Json = { format: 'curator' }
  if (shortString(d.name)) meta.name = d.name
  if (shortString(d.id)) meta.id = d.id
  if (tls) meta.tls = true
  return ok(key, d.address, (tls ? d.sslPort : d.port) as number, weight ?? 1, draining ? 'draining' : 'up', meta)
}

function decodeServerSet(key: string, d: Json): DecodeResult {
  const ep = d.serviceEndpoint
  if (!isObject(ep) || !validHost(ep.host) || !validPort(ep.port)) {
    return { ok: false, reason: 'ServerSet serviceEndpoint must have host and port' }
  }
  // Only ALIVE members are routed; STARTING, STOPPING, DEAD... keep their in-flight requests only.
  const status = typeof d.status === 'string' ? d.status.slice(0, 64) : 'ALIVE'
  const meta: Json = { format: 'serverset', status }
  if (Number.isSafeInteger(d.shard) && (d.shard as number) >= 0) meta.shard = d.shard
  return ok(key, ep.host, ep.port, 1, status === 'ALIVE' ? 'up' : 'draining', meta)
}

/** `host:port`, `[v6]:port`. */
function parsePlain(text: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]/]+)):(\d{1,5})$/.exec(text.trim())
  if (!m) return null
  const port = Number(m[3])
  const host = (m[1] ?? m[2])!
  // The same bound on a name as in the JSON layouts (253: DNS's).
  if (!validPort(port) || !validHost(host)) return null
  return { host, port }
}

/** The longest Dubbo provider name read (a real one, with every parameter Dubbo 3 writes, is under 2 KB). */
const DUBBO_NAME_MAX = 8192
/** The most URL parameters of a Dubbo provider read. */
const DUBBO_PARAMS_MAX = 256
/** A url-encoded `scheme://` at the start of a child's name: Dubbo's provider layout. */
const DUBBO_NAME = /^[a-z][a-z0-9+.-]{0,31}%3A%2F%2F/i
/** A decoded provider URL: scheme://host:port/path?query; the host a name or a bracketed IPv6 literal. */
const DUBBO_URL = /^([a-z][a-z0-9+.-]*):\/\/(\[[0-9a-fA-F:.]+\]|[^\s:/?#[\]@]+):([0-9]{1,5})(\/[^?#\s]*)?(?:\?([^#]*))?$/

/** Which Dubbo protocols are HTTP, and how the proxy speaks to them: Triple is gRPC over HTTP/2, prior knowledge. */
const DUBBO_PROTOCOLS: Readonly<Record<string, 'h2c' | 'http/1.1'>> = { tri: 'h2c', rest: 'http/1.1', http: 'http/1.1' }

function decodeDubbo(key: string, name: string): DecodeResult {
  if (name.length > DUBBO_NAME_MAX) return { ok: false, reason: `Dubbo provider name longer than ${DUBBO_NAME_MAX} characters` }
  let url: string
  try {
    // Dubbo encodes with java.net.URLEncoder: a space is `+`, a real `+` is %2B.
    url = decodeURIComponent(name.replace(/\+/g, ' '))
  } catch {
    return { ok: false, reason: 'Dubbo provider name is not valid url-encoding' }
  }
  const m = DUBBO_URL.exec(url)
  if (m === null) return { ok: false, reason: 'Dubbo provider name is not protocol://host:port/interface?params' }
  const scheme = m[1]!.toLowerCase()
  const protocol = DUBBO_PROTOCOLS[scheme]
  if (scheme === 'dubbo') return { ok: false, reason: "Dubbo binary protocol (dubbo://) is not HTTP: only tri, rest and http providers are proxied" }
  if (protocol === undefined) return { ok: false, reason: `Dubbo provider protocol "${scheme.slice(0, 32)}" is not HTTP: only tri, rest and http providers are proxied` }
  const port = Number(m[3])
  if (!validPort(port)) return { ok: false, reason: 'Dubbo provider port must be 1-65535' }
  const host = m[2]!
  if (!validHost(host)) return { ok: false, reason: 'Dubbo provider host must be a name or an address' }
  const params = new Map<string, string>()
  const query = m[5] ?? ''
  let count = 0
  for (const pair of query.split('&')) {
    if (pair === '') continue
    if (++count > DUBBO_PARAMS_MAX) return { ok: false, reason: `Dubbo provider URL has more than ${DUBBO_PARAMS_MAX} parameters` }
    const eq = pair.indexOf('=')
    const k = eq < 0 ? pair : pair.slice(0, eq)
    // The first value of a name counts, as Dubbo's URL parser keeps it.
    if (!params.has(k)) params.set(k, eq < 0 ? '' : pair.slice(eq + 1))
  }
  const category = params.get('category')
  if (category !== undefined && category !== 'providers') return { ok: false, reason: `Dubbo URL of category "${category.slice(0, 32)}" is not a provider` }
  if (params.get('disabled') === 'true' || params.get('enabled') === 'false') return { ok: false, reason: 'Dubbo provider is disabled (disabled=true or enabled=false)' }
  // Dubbo's default weight is 100; kept on its scale, bounded (clamped) like any other.
  const weight = readWeight(params.get('weight') ?? 100) ?? null
  if (weight === null) return { ok: false, reason: `Dubbo provider weight must be a number ${WEIGHT_MIN}-${WEIGHT_MAX}` }
  const meta: Json = { format: 'dubbo', protocol, dubboProtocol: scheme }
  const iface = m[4]?.slice(1) ?? ''
  if (shortString(iface) && iface !== '') meta.interface = iface
  for (const k of ['application', 'version', 'group']) {
    const v = params.get(k)
    if (v !== undefined && shortString(v)) meta[k] = v
  }
  return ok(key, host, port, weight, 'up', meta)
}

/** Decodes the data of the child `name` (its znode path is `key`). */
export function decodeInstance(key: string, name: string, data: Buffer | null | undefined): DecodeResult {
  if (DUBBO_NAME.test(name)) return decodeDubbo(key, name)
  const text = data === null || data === undefined ? '' : data.toString('utf8').trim()
  if (text === '') {
    const fromName = parsePlain(name)
    return fromName
      ? ok(key, fromName.host, fromName.port, 1, 'up', { format: 'name' })
      : { ok: false, reason: 'empty data and the child name is not host:port' }
  }
  if (text.startsWith('{')) {
    let d: unknown
    try {
      d = JSON.parse(text)
    } catch {
      return { ok: false, reason: 'data looks like JSON but does not parse' }
    }
    if (!isObject(d)) return { ok: false, reason: 'JSON data must be an object' }
    if ('serviceEndpoint' in d) return decodeServerSet(key, d)
    if ('address' in d) return decodeCurator(key, d)
    if ('host' in d) return decodeOurs(key, d)
    return { ok: false, reason: 'JSON matches no known layout (ours, Curator, ServerSet)' }
  }
  const plain = parsePlain(text)
  return plain
    ? ok(key, plain.host, plain.port, 1, 'up', { format: 'text' })
    : { ok: false, reason: 'data is neither JSON nor host:port' }
}
