#!/usr/bin/env node
// The command line: argv, signals and exit codes live here and nowhere else.
//   0  stopped cleanly      1  failed at run time (e.g. port in use)      2  bad config or arguments

import process from 'node:process'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { stringify as toYaml } from 'yaml'
import { ZK_CREDENTIALS_ENV, effectiveConfig, loadConfig, readConfigText } from './config.js'
import { ConfigError } from './errors.js'
import { unbindableAddresses } from './bind-check.js'
import { createLogger } from './log.js'
import cluster from 'node:cluster'
import { configTextFromPrimary, runPrimary, runWorker } from './cluster.js'
import { createProxy } from './proxy.js'
import { adviseMalloc } from './ops/tuning.js'
import { register } from './discovery/registry.js'
import { WEIGHT_MAX, WEIGHT_MIN } from './discovery/endpoint.js'
import { ENGINE, PARSER_SETTINGS } from './http/h1/engine.js'
import { FleetUsageError, runFleet } from './fleet-cli.js'

const USAGE = `Usage:
  zoo-proxy --config <file>            run the proxy (same as: zoo-proxy run --config <file>)
  zoo-proxy check --config <file>      validate a config file, print the effective config (YAML), exit 0 / 2
  zoo-proxy register --zookeeper <connect> --path <service path> --host <host> --port <port>
                     [--weight <n>] [--check <url>] [--check-interval-ms <ms>] [--drain-ms <ms>]
                     [--session-timeout-ms <ms>] [--auth <user:pass>]
                                       keep an ephemeral instance znode while this runs
  zoo-proxy fleet push FILE --zookeeper <connect> --fleet <path> [--message M]
                     [--canary-percent N | --canary-proxies id,id]
  zoo-proxy fleet status --zookeeper <connect> --fleet <path> [--wait-ms N]
  zoo-proxy fleet promote | rollback [--to t-N] | history [--limit N] | diff A B
                     --zookeeper <connect> --fleet <path>
                                       one routing table for every proxy (docs/fleet.md); every
                                       fleet verb takes --auth <user:pass>
  zoo-proxy --help | --version
Environment: ZOO_PROXY_PARSER=portable runs on the portable HTTP/1.1 parser (see docs/http.md).
Exit status: 0 stopped cleanly, 1 run-time failure, 2 bad config or arguments,
             3 (fleet) another writer changed the fleet first; nothing written.`

class UsageError extends Error {}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/** Resolves on the first SIGINT/SIGTERM; a second one exits at once. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let seen = false
    const on = (sig: NodeJS.Signals) => {
      if (seen) process.exit(1)
      seen = true
      resolve(sig)
    }
    process.on('SIGINT', on)
    process.on('SIGTERM', on)
  })
}

/** SIGHUP reloads the config file (nginx's reload); what happens is logged by the reload itself. */
function onHangup(reload: () => Promise<unknown>): void {
  process.on('SIGHUP', () => {
    reload().catch(() => {})
  })
}

async function runProxy(configFile: string | undefined, checkOnly: boolean): Promise<number> {
  if (configFile === undefined) throw new UsageError('--config <file> is required')
  const setting = process.env.ZOO_PROXY_PARSER
  if (setting !== undefined && setting !== '' && !(PARSER_SETTINGS as readonly string[]).includes(setting)) {
    throw new UsageError(`ZOO_PROXY_PARSER must be ${PARSER_SETTINGS.join(' or ')}, got "${setting}"`)
  }
  // A worker of `workers: N` starts from the text its primary read and runs, not from the file,
  // which may have changed since (or be half written).
  const text = cluster.isWorker ? await configTextFromPrimary() : await readConfigText(configFile)
  const config = await loadConfig(configFile, text)
  if (checkOnly) {
    const unbindable = await unbindableAddresses([
      ['listen', config.listen],
      ['admin', config.admin],
    ])
    if (unbindable.length > 0) throw new ConfigError(unbindable)
    // The effective config, every default written out, as YAML a file could hold (the first
    // line a YAML comment, so the whole output is that YAML).
    console.log(`# ${configFile}: ok (${config.services.length} service${config.services.length === 1 ? '' : 's'}); the effective config:`)
    process.stdout.write(toYaml(effectiveConfig(config)))
    return 0
  }
  const logger = createLogger(config.log.level)
  if (!cluster.isWorker) {
    adviseMalloc(logger)
    // The portable path works, but costs more CPU per request: say so once, and why (issue 15).
    if (ENGINE.name === 'portable') logger.warn({ parser: 'portable', reason: ENGINE.reason }, `HTTP/1.1 parser: portable path (${ENGINE.reason})`)
  }
  if (config.workers > 1) {
    if (cluster.isWorker) {
      await runWorker(config, logger, configFile)
      return 0
    }
    const primary = await runPrimary(config, logger, config.workers, configFile, text)
    onHangup(() => primary.reload())
    const sig = await untilSignal()
    logger.info({ signal: sig }, 'shutting down')
    await primary.close()
    return 0
  }
  const proxy = await createProxy(config, { logger, configFile })
  onHangup(() => proxy.reloadFromFile())
  try {
    await proxy.start()
  } catch (err) {
    logger.error({ err: String(err) }, 'cannot start')
    await proxy.close()
    return 1
  }
  const sig = await untilSignal()
  logger.info({ signal: sig }, 'shutting down')
  await proxy.close()
  return 0
}

function intArg(name: string, value: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer ${min}..${max}, got "${value}"`)
  return n
}

async function runRegister(v: Record<string, string | boolean | undefined>): Promise<number> {
  const str = (k: string): string | undefined => (typeof v[k] === 'string' ? (v[k] as string) : undefined)
  for (const k of ['zookeeper', 'path', 'host', 'port']) if (str(k) === undefined) throw new UsageError(`--${k} is required`)
  const path = str('path')!
  if (!path.startsWith('/') || path.endsWith('/')) throw new UsageError(`--path must be an absolute znode path like /services/example`)
  const port = intArg('port', str('port'), 1, 65535)!
  const weight = intArg('weight', str('weight'), WEIGHT_MIN, WEIGHT_MAX)
  const drainMs = intArg('drain-ms', str('drain-ms'), 0) ?? 0
  const sessionTimeoutMs = intArg('session-timeout-ms', str('session-timeout-ms'), 100)
  const checkUrl = str('check')
  if (checkUrl !== undefined && !/^https?:\/\/[^/]+/.test(checkUrl)) throw new UsageError(`--check must be an http:// URL, got "${checkUrl}"`)
  const checkIntervalMs = intArg('check-interval-ms', str('check-interval-ms'), 10)
  // ZooKeeper digest credentials (also from ZOO_PROXY_ZK_CREDENTIALS, to keep them off the command line).
  const auth = str('auth') ?? (process.env[ZK_CREDENTIALS_ENV] || undefined)
  if (auth !== undefined && !/^[^:]+:.+$/.test(auth)) throw new UsageError('--auth must be user:pass')
  const logger = createLogger('info')
  // Listening for the signal before registering: a SIGTERM that comes while the node is being
  // created (it exists before register() returns) must still drain and deregister, not kill the
  // process with the node left behind for a session timeout.
  const signalled = untilSignal()
  const reg = await register({
    connect: str('zookeeper')!,
    path,
    host: str('host')!,
    port,
    weight,
    sessionTimeoutMs,
    check: checkUrl === undefined ? undefined : { url: checkUrl, intervalMs: checkIntervalMs },
    ...(auth === undefined ? {} : { auth: [{ scheme: 'digest', credentials: auth }] }),
    logger,
  })
  const sig = await signalled
  logger.info({ signal: sig, drainMs }, 'draining before deregistering')
  await reg.drain().catch(() => {})
  if (drainMs > 0) await new Promise((r) => setTimeout(r, drainMs))
  await reg.close()
  return 0
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
      zookeeper: { type: 'string' },
      path: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      weight: { type: 'string' },
      'drain-ms': { type: 'string' },
      'session-timeout-ms': { type: 'string' },
      check: { type: 'string' },
      'check-interval-ms': { type: 'string' },
      auth: { type: 'string' },
      fleet: { type: 'string' },
      message: { type: 'string' },
      'canary-percent': { type: 'string' },
      'canary-proxies': { type: 'string' },
      'wait-ms': { type: 'string' },
      to: { type: 'string' },
      limit: { type: 'string' },
    },
  })
  if (values.help) {
    console.log(USAGE)
    return 0
  }
  if (values.version) {
    console.log(version())
    return 0
  }
  const command = positionals[0] ?? 'run'
  if (command === 'fleet') return runFleet(positionals.slice(1), values)
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`)
  switch (command) {
    case 'run':
      return runProxy(values.config, false)
    case 'check':
      return runProxy(values.config, true)
    case 'register':
      return runRegister(values)
    default:
      throw new UsageError(`unknown command "${command}"`)
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      for (const line of err.problems) console.error(line)
      process.exit(2)
    }
    if (err instanceof UsageError || err instanceof FleetUsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`zoo-proxy: ${(err as Error).message}\n\n${USAGE}`)
      process.exit(2)
    }
    console.error(`zoo-proxy: ${(err as Error)?.stack ?? String(err)}`)
    process.exit(1)
  },
)
