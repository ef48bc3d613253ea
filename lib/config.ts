// The config schema, its defaults, and loading from YAML or JSON.
//
// Validated once with zod (a well-kept validator: typed output, field paths in every issue, strict
// objects for unknown keys), then frozen. Every problem is reported as one `field.path: message`
// line, all of them at once, before anything binds a port.

import { isIP } from 'node:net'
import process from 'node:process'
import path from 'node:path'
import { isScalar, LineCounter, parseDocument, visit } from 'yaml'
import { z } from 'zod'
import { ConfigError } from './errors.js'
import { MAX_CONFIG_BYTES, MAX_SECRET_BYTES, readFieldText } from './read-file.js'
import { DEFAULT_LIMITS } from './limits.js'
import { WEIGHT_MAX, WEIGHT_MIN } from './discovery/endpoint.js'
import { BUILTIN_STRATEGIES, StrategyOptionError, buildStrategy, isBuiltinStrategy, withDefaultOptions } from '../strategies/index.js'
import { didYouMean } from './did-you-mean.js'
import { loadTlsFiles } from './tls-files.js'
import { DEFAULT_RETRY_ON, RETRY_CONDITIONS } from './balancing/retry.js'
import { MAX_HEADER_RULES, MAX_HEADER_VALUE_CHARS, MAX_METHODS, MAX_REGEX_CHARS, MAX_SPLIT_TARGETS, MAX_SPLIT_WEIGHT, parseHashKey, regexProblem, routingPath } from './route-rules.js'

/** Most routes one service may list (each is tried in turn for a request that matches no earlier one). */
const MAX_ROUTES_PER_SERVICE = 64
import type { TlsFiles } from './tls-files.js'
import type { StrategySpec } from '../strategies/index.js'
import { joinHostPort } from './host-port.js'

export interface HostPort {
  readonly host: string
  readonly port: number
}

/** `host:port`, `[v6]:port`, `:port` or a bare port; a missing host means loopback. */
export function parseHostPort(value: string | number): HostPort | null {
  const text = String(value).trim()
  let host = '127.0.0.1'
  let portText = text
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(text)
  if (v6) {
    host = v6[1]!
    portText = v6[2]!
  } else if (text.includes(':')) {
    const at = text.lastIndexOf(':')
    if (at > 0) host = text.slice(0, at)
    portText = text.slice(at + 1)
    if (host.includes(':') || /\s/.test(host)) return null
  }
  if (!/^\d{1,5}$/.test(portText)) return null
  const port = Number(portText)
  return port <= 65535 ? { host, port } : null
}

const hostPort = z
  .union([z.string(), z.number()])
  .transform((v, ctx) => {
    const parsed = parseHostPort(v)
    if (parsed === null) {
      ctx.addIssue({ code: 'custom', message: `must be host:port, got ${JSON.stringify(v)}` })
      return z.NEVER
    }
    return parsed
  })

/** Optional: absent, or written empty in YAML (`key:` is null), both mean "not set". */
const optional = <T extends z.ZodType>(schema: T) => schema.nullish().transform((v) => v ?? undefined)

/** `address/prefix` (a bare address is /32 or /128), as node:net's BlockList takes it. */
export interface Cidr {
  readonly address: string
  readonly prefix: number
  readonly family: 'ipv4' | 'ipv6'
}

const cidr = z.string().transform((v, ctx): Cidr => {
  const [address = '', prefixText, ...rest] = v.trim().split('/')
  const version = isIP(address)
  const max = version === 6 ? 128 : 32
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : -1
  if (version === 0 || rest.length > 0 || prefix < 0 || prefix > max) {
    ctx.addIssue({ code: 'custom', message: `must be a CIDR like 10.0.0.0/8 or fd00::/8, got ${JSON.stringify(v)}` })
    return z.NEVER
  }
  return { address, prefix, family: version === 6 ? 'ipv6' : 'ipv4' }
})

/**
 * The longest duration a timer can hold: Node's setTimeout takes at most 2^31-1 ms (24.8 days) and
 * turns anything longer into 1 ms (a health check every millisecond from `intervalMs: 3e9`). Every
 * duration in the config is bounded by it.
 */
export const MAX_DURATION_MS = 2_147_483_647
const duration = () => z.number().int().nonnegative().max(MAX_DURATION_MS, { message: `at most ${MAX_DURATION_MS} ms (24.8 days)` })
const ms = (def: number) => duration().default(def)
/** A count someone could write as 1e12: bounded so that nothing sized by it can grow without end. */
const count = (min: number, max: number) => z.number().int().min(min).max(max)

/** Per-instance weights by `host:port`, in the one weight range (WEIGHT_MIN..WEIGHT_MAX, fractions allowed). */
const weightsField = z.record(z.string(), z.number().min(WEIGHT_MIN).max(WEIGHT_MAX))
const positiveMs = (def: number) => duration().positive().default(def)

const znodePath = z
  .string()
  .refine((p) => /^\/[^\0]*$/.test(p) && (p === '/' || !p.endsWith('/')) && !p.includes('//'), {
    message: 'must be an absolute ZooKeeper path like /services/example',
  })

/** A strategy factory's complaint, with "did you mean" when it names an unknown option. */
function strategyProblem(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  return err instanceof StrategyOptionError && err.known !== undefined ? `${message}${didYouMean(err.field, err.known)}` : message
}

/** `strategy: round-robin` or `{ name: ..., ...options }` or `{ module: ./file.js, ...options }`. */
const strategyField = z
  .union([z.string(), z.looseObject({})])
  .superRefine((v, ctx) => {
    const name = typeof v === 'string' ? v : v.module === undefined ? v.name : undefined
    if (typeof name !== 'string') return
    if (!isBuiltinStrategy(name)) {
      const hint = didYouMean(name, Object.keys(BUILTIN_STRATEGIES))
      ctx.addIssue({ code: 'custom', message: `unknown strategy "${name}"${hint}`, path: typeof v === 'string' ? [] : ['name'] })
      return
    }
    // A built-in's options are checked here, in the same pass as the schema, so that every problem
    // comes in one round (a user's module can only be loaded later, in validateConfig).
    const options = typeof v === 'string' ? {} : Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'name' && k !== 'module'))
    try {
      BUILTIN_STRATEGIES[name]!(options, { random: Math.random })
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: strategyProblem(err), path: err instanceof StrategyOptionError && typeof v !== 'string' ? [err.field] : [] })
    }
  })
  .default('round-robin')

const retrySchema = z
  .strictObject({
    /** Attempts per request in all, the first one included. */
    attempts: z.number().int().min(1).max(10).default(3),
    /** Deadline for one attempt to get response headers; defaults to the service's `timeoutMs`. */
    perTryTimeoutMs: optional(duration().positive()),
    /** Base of the jittered exponential backoff between attempts. */
    backoffMs: ms(25),
    /** Request bodies up to this size are held so they can be sent again. */
    bufferBytes: count(0, 64 * 1024 * 1024).default(64 * 1024),
    /** Retry non-idempotent methods on reset/timeout/gateway-error too (nginx: off). */
    nonIdempotent: z.boolean().default(false),
    /** Which failures are retried (Envoy's names; `grpc-*`: a gRPC status before any message, docs/grpc.md). */
    on: z.array(z.enum(RETRY_CONDITIONS)).max(RETRY_CONDITIONS.length * 2).default([...DEFAULT_RETRY_ON]),
    /** Finagle's retry budget: retries add at most `percent` % of the window's requests, plus a reserve. */
    budget: z
      .strictObject({
        /** At most 1000: retries may add ten times the requests, never an unbounded amount. */
        percent: z.number().min(0).max(1000).default(20),
        minRetriesPerSecond: z.number().min(0).max(100_000).default(10),
        windowMs: duration().min(1000).default(10_000),
      })
      .prefault({}),
  })
  .prefault({})

const outlierSchema = z
  .strictObject({
    /** Connection failures or gateway errors in a row that eject an instance (0: never). */
    consecutiveFailures: count(0, 1_000_000).default(5),
    /** An ejection lasts this long times the number of times the instance was ejected... */
    baseEjectionMs: positiveMs(30_000),
    /** ...but never longer than this. */
    maxEjectionMs: positiveMs(300_000),
    /** At most this share of a service's instances are ejected at once (at least one may be). */
    maxEjectionPercent: z.number().min(0).max(100).default(50),
  })
  .prefault({})

const healthCheckSchema = z.strictObject({
  /** GET this path on every instance; any 2xx is a pass. */
  path: z.string().startsWith('/', { message: 'must start with /' }),
  intervalMs: positiveMs(5_000),
  timeoutMs: positiveMs(2_000),
  /** Passes in a row that put an unhealthy instance back. */
  healthyThreshold: count(1, 1000).default(2),
  /** Failures in a row that take an instance out. */
  unhealthyThreshold: count(1, 1000).default(3),
})

/** How instances that speak TLS are verified (and, with cert and key, how the proxy proves itself: mTLS). */
const upstreamTlsSchema = z.strictObject({
  /** CA certificates (PEM file) an instance's certificate must chain to. */
  ca: z.string().min(1),
  /** A client certificate and its key (PEM files), for instances that ask for one. */
  cert: optional(z.string().min(1)),
  key: optional(z.string().min(1)),
  /** The name the certificate must carry (and SNI); default: the instance's host. */
  servername: optional(z.string().min(1)),
})

/** An HTTP token (RFC 9110 §5.6.2): a header name or a method. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** One header's rule: a bare string is an exact value; else exactly one of exact, prefix, regex (RE2, whole value). */
const headerRuleSchema = z.preprocess(
  (v) => (typeof v === 'string' ? { exact: v } : v),
  z
    .strictObject({
      exact: optional(z.string().max(MAX_HEADER_VALUE_CHARS)),
      prefix: optional(z.string().min(1).max(MAX_HEADER_VALUE_CHARS)),
      regex: optional(
        z
          .string()
          .min(1)
          .superRefine((p, ctx) => {
            if (p.length > MAX_REGEX_CHARS) ctx.addIssue({ code: 'custom', message: `at most ${MAX_REGEX_CHARS} characters` })
            else {
              const problem = regexProblem(p)
              if (problem !== null) ctx.addIssue({ code: 'custom', message: `not an RE2 regular expression (linear-time; no backreferences or lookaround): ${problem}` })
            }
          }),
      ),
    })
    .refine((r) => [r.exact, r.prefix, r.regex].filter((v) => v !== undefined).length === 1, { message: 'give exactly one of exact, prefix, regex' }),
)

const matchSchema = z.strictObject({
  host: optional(z.string().min(1)),
  pathPrefix: optional(
    z
      .string()
      .startsWith('/', { message: 'must start with /' })
      // Requests are matched on their normalised path (routingPath): a prefix spelled otherwise would never match.
      .refine((p) => routingPath(p) === p, { message: 'write it as the path it matches: no escaped letters, digits or -._~, escapes in upper case (%2F), no . or .. segments, no // or ;parameters, no \\ or #' }),
  ),
  /** Method names, exactly (HTTP methods are case-sensitive: GET, not get). */
  methods: optional(
    z
      .array(z.string().max(32).regex(/^[!#$%&'*+.^_`|~0-9A-Z-]+$/, { message: 'must be a method name in capitals (methods are case-sensitive)' }))
      .min(1, { message: 'must list at least one method (leave methods out for any)' })
      .max(MAX_METHODS)
      .refine((m) => new Set(m).size === m.length, { message: 'lists a method twice' }),
  ),
  /** By header name; every rule must hold. */
  headers: optional(
    z.record(z.string(), headerRuleSchema).superRefine((h, ctx) => {
      const names = Object.keys(h)
      if (names.length > MAX_HEADER_RULES) ctx.addIssue({ code: 'custom', message: `at most ${MAX_HEADER_RULES} header rules` })
      for (const n of names) if (n.length > 256 || !TOKEN.test(n)) ctx.addIssue({ code: 'custom', message: 'must be a header name (an HTTP token, at most 256 characters)', path: [n] })
    }),
  ),
})

/** Paths a rewrite may put in: an absolute path of RFC 3986 pchars, no query, no dot segments. */
const rewritePathField = z
  .string()
  .max(1024)
  .regex(/^\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/, { message: 'must be a path like /v2 (no query, no spaces; percent-encode the rest)', abort: true })
  .refine((p) => !/(^|\/)\.\.?(\/|$)/.test(p), { message: 'must not have . or .. segments', abort: true })
  // A server decoding it would climb above it: `/v2/%2e%2e`, `/v2/..;x` (Tomcat), `/v2%2F..` (nginx, Go).
  .refine((p) => routingPath(p) === p && !/%2f|%5c|%00/i.test(p), { message: 'must be in the form routes match: no encoded . or .. segments, no ;parameters on a dot segment, no //, escapes in upper case, no %2F, %5C or %00' })

/** `stripPrefix: true` or `prefix: /v2`: what takes the matched pathPrefix's place. */
const rewriteSchema = z
  .strictObject({
    stripPrefix: optional(z.literal(true, { message: 'must be true (leave rewrite out to keep the path)' })),
    prefix: optional(rewritePathField),
  })
  .refine((r) => (r.stripPrefix === undefined) !== (r.prefix === undefined), { message: 'give stripPrefix: true or prefix (one of them)' })

/** A route: requests it matches go to `to` (default: the service it is written in), maybe rewritten. */
const routeSchema = z.strictObject({
  match: optional(matchSchema),
  rewrite: optional(rewriteSchema),
  /** Services by relative weight (0..MAX_SPLIT_WEIGHT, total above 0): a canary split. */
  to: optional(
    z
      .array(z.strictObject({ service: z.string().min(1), weight: z.number().int().min(0).max(MAX_SPLIT_WEIGHT) }))
      .min(1)
      .max(MAX_SPLIT_TARGETS),
  ),
  /** `header:<name>` or `client-address`: the same key always gets the same service of a split. */
  hashKey: optional(z.string().refine((k) => parseHashKey(k) !== null, { message: 'must be "header:<name>" or "client-address"' })),
})

const serviceSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { message: 'must be letters, digits, ".", "_" or "-"' }),
  path: znodePath,
  strategy: strategyField,
  match: optional(matchSchema),
  /** More routes (lib/http/routes.ts); `[]`: none of its own, reached only through other routes' `to`. */
  routes: optional(z.array(routeSchema).max(MAX_ROUTES_PER_SERVICE)),
  /** Overall deadline for a response's headers, all attempts together. */
  timeoutMs: positiveMs(30_000),
  /** TCP connect deadline to one instance. */
  connectTimeoutMs: positiveMs(5_000),
  /** Longest silence between two chunks of a response body once it has started. */
  bodyTimeoutMs: ms(60_000),
  /** Upper bound of pooled connections to one instance. */
  maxConnectionsPerInstance: count(1, 65_536).default(128),
  /** How long an idle pooled upstream connection is kept. */
  keepAliveTimeoutMs: positiveMs(4_000),
  retry: retrySchema,
  /** Per-instance weight overrides, by `host:port`; they win over the znode's weight. */
  weights: weightsField.default({}),
  /** A newly seen instance's weight ramps from 10% to 100% over this long (0: off). */
  slowStartMs: ms(0),
  /** Keep the last instances when ZooKeeper suddenly lists none; default `zookeeper.keepLastOnEmpty`. */
  keepLastOnEmpty: optional(z.boolean()),
  /** Passive health: eject instances that keep failing. */
  outlier: outlierSchema,
  /** Active health: optional periodic checks of every instance. */
  healthCheck: optional(healthCheckSchema),
  /** Overrides the top-level upstreamTls for this service. */
  upstreamTls: optional(upstreamTlsSchema),
  /** How instances whose znode does not say are spoken to: `h2` (TLS, ALPN h2, verified by upstreamTls), `h2c` (prior knowledge), default `http/1.1`. */
  upstreamProtocol: z.enum(['http/1.1', 'h2', 'h2c']).default('http/1.1'),
  /** gRPC-Web from browsers (docs/grpc.md): CORS for the origins listed; translation needs no config. */
  grpcWeb: optional(
    z.strictObject({
      cors: optional(
        z.strictObject({
          /** Origins answered (`https://app.example.com`, exact), or `*`; at most 100, each at most 256 characters. */
          origins: z.array(z.string().min(1).max(256).regex(/^(\*|[a-z][a-z0-9+.-]*:\/\/[^\s/]+)$/, { message: 'must be "*" or scheme://host[:port]' })).min(1).max(100),
          /** How long a browser may keep a preflight's answer, seconds (default 86400, at most 7 days). */
          maxAgeS: z.number().int().min(0).max(604_800).default(86_400),
          /** Request headers allowed besides gRPC-Web's own (content-type, x-grpc-web, x-user-agent, grpc-timeout); at most 50. */
          allowHeaders: z.array(z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, { message: 'must be a header name' })).max(50).default([]),
        }),
      ),
    }),
  ),
  /** In a fleet table (docs/fleet.md): take this service even when it has no routable instance. */
  allowEmpty: optional(z.boolean()),
})

/** `fleet:` (docs/fleet.md): services come from the active table under `path`, not from this file. */
const fleetSchema = z.strictObject({
  path: znodePath.refine((p) => p !== '/', { message: 'must not be the root' }),
  /** This proxy's name under `proxies/` (a znode name); default: the host name and the listen port. */
  id: optional(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/, { message: 'must be 1-128 letters, digits, ".", "_", ":", "@" or "-"' })),
  /** Follow an `active` node the world may write (refused by default: anyone could route the fleet). */
  allowOpenAcl: z.boolean().default(false),
})

const configSchema = z.strictObject({
  listen: hostPort.default({ host: '127.0.0.1', port: 8080 }),
  /** `host:port`, or `{ listen: host:port, token?, tokenFile? }`: a bearer token for every endpoint but /healthz and /readyz. */
  admin: optional(
    z.union([
      hostPort,
      z.strictObject({
        listen: hostPort,
        token: optional(z.string().min(1)),
        /** A file holding the token (relative to the config file), so the secret stays out of the config. */
        tokenFile: optional(z.string().min(1)),
      }),
    ]),
  ),
  zookeeper: z
    .strictObject({
      connect: z.string().min(1).default('127.0.0.1:2181'),
      sessionTimeoutMs: duration().min(100).default(10_000),
      /** Keep a service's last instances when ZooKeeper suddenly lists none (default for services). */
      keepLastOnEmpty: z.boolean().default(true),
      /**
       * When ZooKeeper lists fewer than `minKeepPercent` % of the instances a service had within the
       * last `holdMs`, the missing ones stay until `holdMs` after they went missing, then the removal
       * is honoured (lib/discovery/service-watcher.ts, MassRemovalOptions). minKeepPercent 0: off.
       */
      massRemoval: z
        .strictObject({
          minKeepPercent: z.number().min(0).max(100).default(50),
          // At most an hour: a hold is a bridge over a storm of expiries, not a second registry.
          holdMs: z.number().int().min(0).max(3_600_000).default(30_000),
        })
        .prefault({}),
      /** Write the last known instances here; a proxy starting while ZooKeeper is down serves them. */
      snapshotFile: optional(z.string().min(1)),
      /** Re-reads after a new session start within a random 0..this ms (herd control). */
      resyncJitterMs: ms(250),
      /** Credentials for the session (`digest`, `user:pass`), inline or from a file; see ZK_CREDENTIALS_ENV. */
      auth: z
        .array(
          z
            .strictObject({
              scheme: z.string().min(1).default('digest'),
              credentials: optional(z.string().min(1)),
              credentialsFile: optional(z.string().min(1)),
            })
            .refine((a) => (a.credentials === undefined) !== (a.credentialsFile === undefined), { message: 'give credentials or credentialsFile (one of them)' }),
        )
        .default([]),
    })
    .prefault({}),
  services: optional(z.array(serviceSchema)),
  fleet: optional(fleetSchema),
  /** Worker processes serving `listen` (node:cluster); 1 = this process alone. */
  workers: z.number().int().min(1).max(64).default(1),
  /** On SIGTERM, how long in-flight requests may take to finish before they are cut. */
  shutdownTimeoutMs: ms(10_000),
  /**
   * A reload first reads the instances of every added or re-pathed service (Envoy's cluster
   * warming); if ZooKeeper has not answered them all within this long, the reload is refused and
   * nothing changes. 1 ms to 5 min; default 10 s.
   */
  warmingTimeoutMs: z.number().int().min(1).max(300_000).default(10_000),
  /**
   * Longest silence between two reads of a request body (nginx's client_body_timeout): 408, or a
   * close once the answer started. Time the proxy itself stops reading (backpressure) is not counted.
   */
  clientBodyTimeoutMs: positiveMs(DEFAULT_LIMITS.clientBodyTimeoutMs),
  /** Keep request headers whose names have `_` (nginx's underscores_in_headers); dropped by default. */
  underscoresInHeaders: z.boolean().default(false),
  limits: z
    .strictObject({
      /** Largest request body in bytes, declared or streamed (413); 0: no limit. */
      maxBodyBytes: z.number().int().nonnegative().default(DEFAULT_LIMITS.maxBodyBytes),
      /** Most header fields in a request (431); HAProxy's tune.http.maxhdr is 101. */
      maxHeaders: z.number().int().positive().max(10_000).default(DEFAULT_LIMITS.maxHeaders),
      /** HTTP/2 clients: streams one session may have open at once (our SETTINGS_MAX_CONCURRENT_STREAMS), 1..10000. */
      maxConcurrentStreams: z.number().int().min(1).max(10_000).default(DEFAULT_LIMITS.maxConcurrentStreams),
    })
    .prefault({}),
  /**
   * The plaintext listener serves HTTP/2 with prior knowledge (h2c) to a client whose first bytes
   * are the HTTP/2 connection preface; false: such a client meets the HTTP/1.1 parser.
   */
  h2c: z.boolean().default(true),
  /** HTTPS on `listen` (only): PEM files, relative to the config file. */
  tls: optional(
    z.strictObject({
      cert: z.string().min(1),
      key: z.string().min(1),
      /** CA certificates to send along with the chain (and to verify client certificates, not asked for yet). */
      ca: optional(z.string().min(1)),
      minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
      /** The protocols offered in ALPN, in order of preference; at least one, none twice. */
      alpn: z
        .array(z.enum(['h2', 'http/1.1']))
        .min(1, { message: 'must list at least one protocol (h2, http/1.1)' })
        .refine((a) => new Set(a).size === a.length, { message: 'lists a protocol twice' })
        .default(['h2', 'http/1.1']),
    }),
  ),
  /** Verification for instances whose znode says TLS; absent: the system's CAs. Never off. */
  upstreamTls: optional(upstreamTlsSchema),
  upstreams: z
    .strictObject({
      /** Instances must have an IP address inside one of these CIDRs (`10.0.0.0/8`, `::1/128`); absent: any. */
      allow: optional(z.array(cidr).min(1, { message: 'must list at least one CIDR (leave allow out for any address)' })),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      /** One JSON line per request on stdout (lib/log.ts AccessEntry), whatever the level. */
      access: z.boolean().default(false),
    })
    .prefault({}),
}).superRefine((c, ctx) => {
  if (c.fleet !== undefined) {
    if (c.services !== undefined) ctx.addIssue({ code: 'custom', path: ['services'], message: "not allowed with fleet: services come from the fleet's active table (push them with zoo-proxy fleet push)" })
    if (c.workers > 1) ctx.addIssue({ code: 'custom', path: ['workers'], message: 'must be 1 with fleet (one process follows the fleet table)' })
  } else if ((c.services?.length ?? 0) === 0) ctx.addIssue({ code: 'custom', path: ['services'], message: 'must list at least one service' })
})

type RawConfig = z.output<typeof configSchema>
type RawService = NonNullable<RawConfig['services']>[number]

export interface ServiceConfig extends Omit<RawService, 'strategy' | 'retry'> {
  readonly strategy: StrategySpec
  readonly retry: Readonly<RawService['retry']> & { readonly perTryTimeoutMs: number }
}

/** One credential of the ZooKeeper session, read from wherever the config said. */
export interface ZkAuthConfig {
  readonly scheme: string
  readonly credentials: string
}

/** Environment variable with `user:pass` digest credentials, when zookeeper.auth names none. */
export const ZK_CREDENTIALS_ENV = 'ZOO_PROXY_ZK_CREDENTIALS'

export interface Config extends Omit<RawConfig, 'services' | 'admin' | 'zookeeper'> {
  readonly zookeeper: Omit<RawConfig['zookeeper'], 'auth'> & { readonly auth: readonly ZkAuthConfig[] }
  readonly services: readonly ServiceConfig[]
  readonly admin: HostPort | undefined
  /**
   * The admin listener's bearer token: `admin.token`, else the content of `admin.tokenFile`, else
   * the environment variable ZOO_PROXY_ADMIN_TOKEN; none: the admin listener asks for nothing.
   */
  readonly adminToken: string | undefined
}

/** Environment variable with the admin token, when the config names none. */
export const ADMIN_TOKEN_ENV = 'ZOO_PROXY_ADMIN_TOKEN'

/**
 * One rule for the admin token from all three places (admin.token, admin.tokenFile, the
 * environment): whitespace around it is trimmed. A client cannot send it anyway (an HTTP field
 * value loses its surrounding whitespace), and a file ends with a newline; a token that is
 * nothing but whitespace is refused, naming where it came from, rather than silently dropped.
 */
function adminTokenOf(text: string, field: string): string {
  const token = text.trim()
  if (token === '') throw new ConfigError([`${field}: the admin token is only whitespace`])
  // A Bearer token is visible ASCII (RFC 6750's b64token is a subset): a client's header carries
  // bytes, not characters, so any other token would match on one client and not on the next.
  const bad = /[^\x21-\x7e]/u.exec(token)
  if (bad !== null) throw new ConfigError([`${field}: the admin token may hold only visible ASCII characters (found U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')} at ${bad.index})`])
  return token
}

function fieldPath(segments: readonly PropertyKey[]): string {
  let out = ''
  for (const s of segments) out += typeof s === 'number' ? `[${s}]` : out === '' ? String(s) : `.${String(s)}`
  return out === '' ? '(root)' : out
}

/**
 * Unknown keys, in the whole file, that get a "did you mean". A budget for the file rather than
 * for each mapping: 2,000 services of 100 unknown keys each took 20 s of guesses.
 */
const MAX_GUESSES = 100

function formatIssues(issues: readonly z.core.$ZodIssue[], root: z.core.$ZodType = configSchema, prefix: readonly PropertyKey[] = [], budget = { guesses: MAX_GUESSES }): string[] {
  const lines: string[] = []
  for (const issue of issues) {
    const at = [...prefix, ...issue.path]
    if (issue.code === 'unrecognized_keys') {
      const known = keysAt(root, at)
      // A guess costs an edit distance per known key: a file of 100,000 unknown keys gets guesses
      // for the first ones only.
      issue.keys.forEach((key) => lines.push(`${fieldPath([...at, key])}: unknown key${budget.guesses-- > 0 ? didYouMean(key, known) : ''}`))
    } else if (issue.code === 'invalid_type') {
      lines.push(`${fieldPath(at)}: expected ${expectedWords(issue.expected, at)}, got ${inputWords(issue.input)}`)
    } else if (issue.code === 'invalid_union') {
      lines.push(...unionProblems(issue, root, at, budget))
    } else {
      lines.push(`${fieldPath(at)}: ${issue.message}`)
    }
  }
  return lines
}

/**
 * A value that fits none of a field's forms: when one form took it far enough to find problems
 * inside (`admin: { listen: 3 }`), those are the problems; else the forms it may take.
 */
function unionProblems(issue: z.core.$ZodIssueInvalidUnion, root: z.core.$ZodType, at: readonly PropertyKey[], budget: { guesses: number }): string[] {
  const inner = issue.errors.find((branch) => !branch.every(typeMismatch))
  if (inner !== undefined) return formatIssues(inner, root, at, budget)
  const expected = [...new Set(expectedTypes(issue).map((e) => expectedWords(e, at)))]
  if (expected.length === 0) return [`${fieldPath(at)}: ${issue.message}`]
  return [`${fieldPath(at)}: expected ${expected.join(' or ')}, got ${inputWords(issue.input)}`]
}

/** True when the value was of none of the types a field (or each of its forms) takes. */
function typeMismatch(issue: z.core.$ZodIssue): boolean {
  if (issue.path.length > 0) return false
  if (issue.code === 'invalid_type') return true
  return issue.code === 'invalid_union' && issue.errors.every((branch) => branch.every(typeMismatch))
}

function expectedTypes(issue: z.core.$ZodIssue): string[] {
  if (issue.code === 'invalid_type') return [issue.expected]
  return issue.code === 'invalid_union' ? issue.errors.flatMap((branch) => branch.flatMap(expectedTypes)) : []
}

/** What a field takes, in the config's words: its unit when its name carries one (`timeoutMs`). */
function expectedWords(expected: string, at: readonly PropertyKey[]): string {
  const key = String(at.at(-1) ?? '')
  if (expected === 'number' || expected === 'int') {
    if (key.endsWith('Ms')) return 'milliseconds as a number'
    if (key.endsWith('Bytes')) return 'bytes as a number'
    if (key.endsWith('Percent')) return 'a percentage as a number'
    return expected === 'int' ? 'a whole number' : 'a number'
  }
  const words: Record<string, string> = { string: 'text', boolean: 'true or false', array: 'a list', object: 'a mapping (key: value)', record: 'a mapping (key: value)' }
  return words[expected] ?? expected
}

/** What was written instead, quoted when it is a word or a number, cut short when long. */
function inputWords(input: unknown): string {
  if (input === undefined) return 'nothing (the field is required)'
  if (input === null) return 'an empty value'
  if (Array.isArray(input)) return 'a list'
  if (typeof input === 'object') return 'a mapping'
  // JSON would call them null: YAML's `1e309` is Infinity, `.nan` NaN.
  if (typeof input === 'number' && !Number.isFinite(input)) return `${input} (${Number.isNaN(input) ? 'not a number' : 'too large'})`
  const text = JSON.stringify(input) ?? String(input)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

interface SchemaDef {
  readonly type: string
  readonly innerType?: z.core.$ZodType
  readonly in?: z.core.$ZodType
  readonly shape?: Readonly<Record<string, z.core.$ZodType>>
  readonly element?: z.core.$ZodType
  readonly valueType?: z.core.$ZodType
  readonly options?: readonly z.core.$ZodType[]
}

const defOf = (schema: z.core.$ZodType): SchemaDef => schema._zod.def as unknown as SchemaDef

/** The schema under its defaults, optionals and transforms: the shape a value must have. */
function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  for (;;) {
    const def = defOf(schema)
    if (def.innerType !== undefined) schema = def.innerType
    else if (def.type === 'pipe' && def.in !== undefined) schema = def.in
    else return schema
  }
}

function childSchema(schema: z.core.$ZodType, segment: PropertyKey): z.core.$ZodType | undefined {
  const def = defOf(unwrap(schema))
  if (def.type === 'object') return typeof segment === 'string' && def.shape !== undefined && Object.hasOwn(def.shape, segment) ? def.shape[segment] : undefined
  if (def.type === 'array') return def.element
  if (def.type === 'record') return def.valueType
  if (def.type === 'union') {
    for (const option of def.options ?? []) {
      const child = childSchema(option, segment)
      if (child !== undefined) return child
    }
  }
  return undefined
}

/** The keys the object at `at` may have, for "did you mean" (none when `at` is not an object). */
function keysAt(root: z.core.$ZodType, at: readonly PropertyKey[]): string[] {
  let schema: z.core.$ZodType | undefined = root
  for (const segment of at) {
    schema = childSchema(schema, segment)
    if (schema === undefined) return []
  }
  const def = defOf(unwrap(schema))
  const objects = def.type === 'union' ? (def.options ?? []).map((o) => defOf(unwrap(o))) : [def]
  return objects.flatMap((d) => (d.type === 'object' && d.shape !== undefined ? Object.keys(d.shape) : []))
}

function normaliseStrategy(raw: string | Record<string, unknown>, baseDir: string, at: string, problems: string[]): StrategySpec {
  if (typeof raw === 'string') return { name: raw, options: {} }
  const { name, module, ...options } = raw
  if (module !== undefined) {
    if (name !== undefined) problems.push(`${at}: give either name or module, not both`)
    if (typeof module !== 'string' || module === '') {
      problems.push(`${at}.module: must be a file path`)
      return { name: 'round-robin', options }
    }
    return { module: path.resolve(baseDir, module), options }
  }
  if (typeof name !== 'string') {
    problems.push(`${at}.name: must name a strategy (or give module)`)
    return { name: 'round-robin', options }
  }
  return { name, options }
}

type RawRoute = NonNullable<RawService['routes']>[number]

/** What makes two routes the same: host, prefix, methods and header rules, in a canonical order. */
function routeKey(m: RawRoute['match']): string {
  const headers = Object.entries(m?.headers ?? {})
    .map(([n, r]) => [n.toLowerCase(), r] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return JSON.stringify([m?.host?.toLowerCase() ?? null, m?.pathPrefix ?? null, [...(m?.methods ?? [])].sort(), headers])
}

/**
 * The route checks a schema cannot make alone, each naming its field: services named in `to`
 * exist (once each) and weigh more than 0 together, a rewrite has a pathPrefix to rewrite, a
 * header is not given twice, two routes never match the same requests, one default route at most.
 */
function routeProblems(services: readonly RawService[]): string[] {
  const problems: string[] = []
  const names = new Set(services.map((s) => s.name))
  const seen = new Map<string, string>()
  const defaultKey = routeKey(undefined)
  services.forEach((s, i) => {
    const entries: [string, RawRoute][] = []
    // The old `match` (or none at all: the default route) is a route to the service itself.
    if (s.match !== undefined || s.routes === undefined) entries.push([`services[${i}]`, { match: s.match, rewrite: undefined, to: undefined, hashKey: undefined }])
    s.routes?.forEach((r, j) => entries.push([`services[${i}].routes[${j}]`, r]))
    for (const [at, r] of entries) {
      const lower = new Map<string, string>()
      for (const name of Object.keys(r.match?.headers ?? {})) {
        const other = lower.get(name.toLowerCase())
        if (other !== undefined) problems.push(`${at}.match.headers.${name}: the same header as ${other} (names are case-insensitive)`)
        else lower.set(name.toLowerCase(), name)
      }
      if (r.rewrite !== undefined && r.match?.pathPrefix === undefined) problems.push(`${at}.rewrite: needs match.pathPrefix (the part of the path it rewrites)`)
      if (r.to !== undefined) {
        const listed = new Map<string, number>()
        r.to.forEach((t, k) => {
          if (!names.has(t.service)) problems.push(`${at}.to[${k}].service: unknown service "${t.service}"`)
          const again = listed.get(t.service)
          if (again !== undefined) problems.push(`${at}.to[${k}].service: "${t.service}" is listed twice (also to[${again}])`)
          else listed.set(t.service, k)
        })
        if (r.to.every((t) => t.weight === 0)) problems.push(`${at}.to: the weights add up to 0; at least one must be above 0`)
      }
      const key = routeKey(r.match)
      const same = seen.get(key)
      const isDefault = key === defaultKey
      if (same === undefined) seen.set(key, at)
      else if (isDefault) problems.push(`${at}.match: only one service may be the default route (no match); ${same} already is`)
      else problems.push(`${at}.match: same match as ${same}.match (routes must differ in host, pathPrefix, methods or headers)`)
    }
  })
  return problems
}

/**
 * Deepest nesting a config may have. Ours goes about eight levels down (services[].routes[].match
 * .headers...); a strategy module's options are free-form, and 10,000 nested lists there ran
 * deepFreeze (and the strategy's own code) out of stack: a RangeError with a stack trace, exit 1.
 */
const MAX_DEPTH = 32

/** The path of the first value nested deeper than MAX_DEPTH, else undefined; iterative, so any depth is safe. */
function tooDeep(input: unknown): PropertyKey[] | undefined {
  const stack: [unknown, PropertyKey[]][] = [[input, []]]
  while (stack.length > 0) {
    const [value, at] = stack.pop()!
    if (value === null || typeof value !== 'object') continue
    if (at.length >= MAX_DEPTH) return at
    if (Array.isArray(value)) value.forEach((v, i) => stack.push([v, [...at, i]]))
    else for (const [k, v] of Object.entries(value)) stack.push([v, [...at, k]])
  }
  return undefined
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

/**
 * Validates a parsed config object. `baseDir` resolves relative strategy modules. Throws
 * ConfigError with every problem found; returns a frozen Config.
 */
export async function validateConfig(input: unknown, baseDir: string, env: Readonly<Record<string, string | undefined>> = process.env): Promise<Config> {
  const deep = tooDeep(input)
  if (deep !== undefined) throw new ConfigError([`${fieldPath(deep)}: nested deeper than ${MAX_DEPTH} levels`])
  const parsed = configSchema.safeParse(input ?? {}, { reportInput: true })
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues))
  const raw = parsed.data
  const problems: string[] = []
  const services = checkServices(raw, baseDir, problems)
  if (problems.length > 0) throw new ConfigError(problems)
  await checkStrategiesBuild(services, problems)
  if (problems.length > 0) throw new ConfigError(problems.sort())
  const zookeeper = { ...raw.zookeeper, auth: await readZkAuth(raw.zookeeper.auth, baseDir, env) }
  if (raw.zookeeper.snapshotFile !== undefined) zookeeper.snapshotFile = path.resolve(baseDir, raw.zookeeper.snapshotFile)
  const { admin, adminToken } = await readAdmin(raw.admin, baseDir, env)
  if (admin !== undefined && sameListener(admin, raw.listen)) problems.push(`admin: the same address as listen (${hostPortText(raw.listen)}); give the admin listener a port of its own`)
  // Certificate paths made absolute, and each set of files read and checked now (parsed, the key
  // matched to its certificate), so a missing or wrong one is exit 2 naming it, for check and start alike.
  const tls = raw.tls === undefined ? undefined : resolveFiles(raw.tls, ['cert', 'key', 'ca'], baseDir)
  const upstreamTls = raw.upstreamTls === undefined ? undefined : resolveFiles(raw.upstreamTls, ['ca', 'cert', 'key'], baseDir)
  await checkTlsSets(raw, tls, upstreamTls, services, problems)
  if (problems.length > 0) throw new ConfigError(problems)
  return deepFreeze({ ...raw, admin, adminToken, tls, upstreamTls, zookeeper, services })
}

/**
 * Two listeners that would ask for one socket: the same port (not 0, which picks a free one) on
 * addresses the kernel takes for one, as Linux decides (bindv6only 0, Node's default): the same
 * address however it is spelled (`127.1`, `[::ffff:127.0.0.1]`, `[0::0]`), `::` with anything
 * (it takes IPv4 too), `0.0.0.0` with any IPv4 address or name, but not with an IPv6 one
 * (`0.0.0.0:8080` and `[::1]:8080` coexist). The second bind would fail at start with
 * EADDRINUSE; `check` says it first, naming the field. Names are compared as names.
 */
function sameListener(a: HostPort, b: HostPort): boolean {
  if (a.port === 0 || a.port !== b.port) return false
  const x = listenerAddress(a.host)
  const y = listenerAddress(b.host)
  if (x.text === y.text || x.text === '::' || y.text === '::') return true
  if (x.text === '0.0.0.0') return y.family !== 6
  if (y.text === '0.0.0.0') return x.family !== 6
  return false
}

/**
 * An address as the kernel will have it: IP literals in one spelling (the WHATWG URL parser's,
 * which reads `127.1` and `0x7f.1` as getaddrinfo does), IPv4-mapped IPv6 as the IPv4 address it
 * is; a name lower-cased (family 0: it resolves at start).
 */
function listenerAddress(host: string): { readonly text: string; readonly family: 0 | 4 | 6 } {
  let name: string
  try {
    name = new URL(`http://${host.includes(':') ? `[${host}]` : host}/`).hostname
  } catch {
    return { text: host.toLowerCase(), family: 0 }
  }
  if (name.startsWith('[')) {
    const v6 = name.slice(1, -1)
    const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6)
    if (mapped === null) return { text: v6, family: 6 }
    const hi = parseInt(mapped[1]!, 16)
    const lo = parseInt(mapped[2]!, 16)
    return { text: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, family: 4 }
  }
  return { text: name, family: isIP(name) === 4 ? 4 : 0 }
}

/** Each service checked against the others (names, routes) and normalised (strategy, weights, TLS, retry). */
function checkServices(raw: RawConfig, baseDir: string, problems: string[]): ServiceConfig[] {
  const names = new Map<string, number>()
  problems.push(...routeProblems(raw.services ?? []))
  return (raw.services ?? []).map((s, i): ServiceConfig => {
    const at = `services[${i}]`
    const seen = names.get(s.name)
    if (seen !== undefined) problems.push(`${at}.name: duplicate service name "${s.name}" (also services[${seen}])`)
    else names.set(s.name, i)
    const strategy = normaliseStrategy(s.strategy as string | Record<string, unknown>, baseDir, `${at}.strategy`, problems)
    const upstreamTls = s.upstreamTls ?? raw.upstreamTls
    if ((upstreamTls?.cert === undefined) !== (upstreamTls?.key === undefined)) {
      problems.push(`${s.upstreamTls !== undefined ? `${at}.upstreamTls` : 'upstreamTls'}: cert and key go together (mTLS)`)
    }
    return {
      ...s,
      upstreamTls: upstreamTls === undefined ? undefined : resolveFiles(upstreamTls, ['ca', 'cert', 'key'], baseDir),
      weights: serviceWeights(s, strategy, at, problems),
      strategy,
      retry: { ...s.retry, perTryTimeoutMs: Math.min(s.retry.perTryTimeoutMs ?? s.timeoutMs, s.timeoutMs) },
    }
  })
}

/** `weights` may also sit in the strategy object (`{ name: weighted, weights: {...} }`); those win. */
function serviceWeights(s: RawService, strategy: StrategySpec, at: string, problems: string[]): RawService['weights'] {
  const inStrategy = strategy.options.weights
  if (inStrategy === undefined) return s.weights
  const parsed = weightsField.safeParse(inStrategy, { reportInput: true })
  if (parsed.success) return { ...s.weights, ...parsed.data }
  problems.push(...formatIssues(parsed.error.issues, weightsField).map((l) => `${at}.strategy.weights${l.startsWith('(root)') ? l.slice(6) : `.${l}`}`))
  return s.weights
}

/**
 * Builds each strategy once now, so a bad option or a broken user module fails here with exit 2
 * rather than on the first request.
 */
async function checkStrategiesBuild(services: readonly ServiceConfig[], problems: string[]): Promise<void> {
  await Promise.all(
    services.map(async (s, i) => {
      try {
        await buildStrategy(s.strategy, { random: Math.random })
      } catch (err) {
        const field = (err as { field?: unknown }).field
        problems.push(`services[${i}].strategy${typeof field === 'string' ? `.${field}` : ''}: ${strategyProblem(err)}`)
      }
    }),
  )
}

/** The session's credentials, inline or read from their files; else from the environment. */
async function readZkAuth(entries: RawConfig['zookeeper']['auth'], baseDir: string, env: Readonly<Record<string, string | undefined>>): Promise<ZkAuthConfig[]> {
  const auth: ZkAuthConfig[] = []
  for (const [i, a] of entries.entries()) {
    if (a.credentials !== undefined) auth.push({ scheme: a.scheme, credentials: a.credentials })
    else {
      const file = path.resolve(baseDir, a.credentialsFile!)
      const text = await readFieldText(`zookeeper.auth[${i}].credentialsFile`, file, MAX_SECRET_BYTES)
      auth.push({ scheme: a.scheme, credentials: text.trim() })
    }
  }
  const fromEnv = env[ZK_CREDENTIALS_ENV]
  if (auth.length === 0 && fromEnv) auth.push({ scheme: 'digest', credentials: fromEnv })
  return auth
}

/** The admin listener's address and its token (admin.token, admin.tokenFile, or the environment). */
async function readAdmin(raw: RawConfig['admin'], baseDir: string, env: Readonly<Record<string, string | undefined>>): Promise<{ admin: HostPort | undefined; adminToken: string | undefined }> {
  let admin: HostPort | undefined
  let adminToken: string | undefined
  if (raw !== undefined && 'listen' in raw) {
    admin = raw.listen
    if (raw.token !== undefined) adminToken = adminTokenOf(raw.token, 'admin.token')
    else if (raw.tokenFile !== undefined) {
      const file = path.resolve(baseDir, raw.tokenFile)
      const text = await readFieldText('admin.tokenFile', file, MAX_SECRET_BYTES)
      if (text === '') throw new ConfigError([`admin.tokenFile: ${file} is empty`])
      adminToken = adminTokenOf(text, `admin.tokenFile (${file})`)
    }
  } else admin = raw
  // An empty variable is an unset one (a compose file's `ZOO_PROXY_ADMIN_TOKEN=`).
  if (adminToken === undefined && env[ADMIN_TOKEN_ENV]) adminToken = adminTokenOf(env[ADMIN_TOKEN_ENV], ADMIN_TOKEN_ENV)
  return { admin, adminToken }
}

/** Every set of certificate files (tls, upstreamTls, each service's own) read and checked. */
async function checkTlsSets(raw: RawConfig, tls: TlsFiles | undefined, upstreamTls: TlsFiles | undefined, services: readonly ServiceConfig[], problems: string[]): Promise<void> {
  const sets: [string, TlsFiles][] = []
  if (tls !== undefined) sets.push(['tls', tls])
  if (upstreamTls !== undefined) sets.push(['upstreamTls', upstreamTls])
  services.forEach((s, i) => {
    if (raw.services![i]!.upstreamTls !== undefined && s.upstreamTls !== undefined) sets.push([`services[${i}].upstreamTls`, s.upstreamTls])
  })
  for (const [field, files] of sets) {
    try {
      await loadTlsFiles(field, files)
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      problems.push(...err.problems)
    }
  }
}

/** `obj` with the file paths in `fields` made absolute against the config file's folder. */
function resolveFiles<T extends object>(obj: T, fields: readonly string[], baseDir: string): T {
  const out = { ...obj } as Record<string, unknown>
  for (const f of fields) if (typeof out[f] === 'string') out[f] = path.resolve(baseDir, out[f] as string)
  return out as T
}

/** `host:port` as a config file writes it (`[v6]:port` for IPv6). */
function hostPortText(at: HostPort): string {
  return joinHostPort(at.host, at.port)
}

/**
 * The config as a file would say it with every default written out (`zoo-proxy check` prints it
 * as YAML): validating it again gives the same config.
 */
export function effectiveConfig(config: Config): Record<string, unknown> {
  // Through JSON: fields left unset (undefined) are left out, as a file would leave them.
  return JSON.parse(JSON.stringify(effectiveFields(config))) as Record<string, unknown>
}

function effectiveFields(config: Config): Record<string, unknown> {
  // The admin token is never printed (its place is admin.token, redacted, below).
  const rest: { -readonly [K in keyof Config]?: Config[K] } = { ...config }
  delete rest.adminToken
  return {
    ...rest,
    listen: hostPortText(config.listen),
    upstreams: config.upstreams.allow === undefined ? {} : { allow: config.upstreams.allow.map((c) => `${c.address}/${c.prefix}`) },
    // The token itself is never printed.
    ...(config.admin === undefined ? {} : { admin: config.adminToken === undefined ? hostPortText(config.admin) : { listen: hostPortText(config.admin), token: '<redacted>' } }),
    // Credentials are never printed either.
    zookeeper: { ...config.zookeeper, auth: config.zookeeper.auth.map((a) => ({ scheme: a.scheme, credentials: '<redacted>' })) },
    services: config.services.map((s) => ({
      ...s,
      strategy: s.strategy.module !== undefined ? { module: s.strategy.module, ...s.strategy.options } : { name: s.strategy.name, ...withDefaultOptions(s.strategy.name, s.strategy.options) },
      keepLastOnEmpty: s.keepLastOnEmpty ?? config.zookeeper.keepLastOnEmpty,
    })),
  }
}

/** The text of a config file (a ConfigError when it cannot be read). */
export async function readConfigText(file: string): Promise<string> {
  return readFieldText('(file)', file, MAX_CONFIG_BYTES)
}

/** Longest line of a YAML error's snippet shown: a config line can be a megabyte of one value. */
const MAX_SNIPPET_LINE = 200

/**
 * A parser's message with the snippet the YAML parser puts after "at line N, column M:" (the
 * lines around the error and a caret under it), indented under the problem line; lines cut short.
 */
function syntaxErrorText(message: string): string {
  const [first = '', ...rest] = message.trimEnd().split('\n')
  const snippet = rest.filter((line, i) => i > 0 || line !== '').map((line) => `  ${line.length > MAX_SNIPPET_LINE ? `${line.slice(0, MAX_SNIPPET_LINE)}...` : line}`)
  return [first, ...snippet].join('\n')
}

/**
 * A YAML text as plain data, in time linear in its size. The parser's own check for a key written
 * twice compares each key with every earlier one of its mapping: a file of 200,000 keys held `check`
 * (and a reload, on the proxy's event loop) for minutes. So that check is off, and the same one is
 * done here with a set per mapping: equal scalar values are the same key, as the parser decides.
 */
export function parseYamlLinear(text: string): unknown {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { uniqueKeys: false, lineCounter })
  if (doc.errors.length > 0) throw doc.errors[0]
  visit(doc, {
    Map(_, map) {
      const seen = new Set<unknown>()
      for (const { key } of map.items) {
        if (!isScalar(key)) continue
        if (seen.has(key.value)) {
          const shown = JSON.stringify(key.value) ?? String(key.value)
          throw new Error(`Map keys must be unique: ${shown.length > 60 ? `${shown.slice(0, 57)}...` : shown} is written twice${key.range ? whereInText(text, lineCounter, key.range) : ''}`)
        }
        seen.add(key.value)
      }
    },
  })
  return doc.toJS()
}

/**
 * ` at line N, column M:` and the snippet after it (the line, a caret under the range), as the
 * parser writes its own errors, so that syntaxErrorText shows it the same way.
 */
function whereInText(text: string, lineCounter: LineCounter, range: readonly [number, number, number]): string {
  const { line, col } = lineCounter.linePos(range[0])
  const start = lineCounter.lineStarts[line - 1] ?? 0
  const end = text.indexOf('\n', start)
  const lineText = text.slice(start, end < 0 ? undefined : end).replace(/\r$/, '')
  const carets = Math.max(1, Math.min(range[1] - range[0], MAX_SNIPPET_LINE - col))
  return ` at line ${line}, column ${col}:\n\n${lineText}\n${' '.repeat(col - 1)}${'^'.repeat(carets)}\n`
}

/**
 * Reads and validates a config file; `.json` is parsed as JSON, anything else as YAML. With `text`,
 * that is taken as the file's content (what another process already read and validated), and only
 * the files it names are read.
 */
export async function loadConfig(file: string, text?: string): Promise<Config> {
  text ??= await readConfigText(file)
  let input: unknown
  try {
    input = file.endsWith('.json') ? JSON.parse(text) : parseYamlLinear(text)
  } catch (err) {
    throw new ConfigError([`(file): ${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${syntaxErrorText((err as Error).message)}`])
  }
  return validateConfig(input, path.dirname(path.resolve(file)))
}
