// A fleet table's `services` checked as `zoo-proxy check` checks a file: the process's own config
// (what its file says about this process) with the table's services in place of none, through
// the same validateConfig. So a table is accepted by a proxy exactly when the same services in
// its file would be.

import { effectiveConfig, validateConfig } from '../config.js'
import type { Config } from '../config.js'
import { joinHostPort } from '../host-port.js'

/**
 * The config this process would run with `services`: a ConfigError (every problem, by field path
 * such as `services[1].strategy`) when they would not pass `check`. `base` is the running config,
 * which has `fleet` and no services; `baseDir` resolves relative paths (strategy modules).
 */
export async function tableConfig(base: Config, services: readonly unknown[], baseDir: string): Promise<Config> {
  // The file as check would print it, with the secrets check redacts put back.
  const file = effectiveConfig(base)
  delete file.fleet
  const input = {
    ...file,
    zookeeper: { ...(file.zookeeper as object), auth: base.zookeeper.auth.map((a) => ({ scheme: a.scheme, credentials: a.credentials })) },
    ...(base.admin === undefined ? {} : { admin: { listen: joinHostPort(base.admin.host, base.admin.port), ...(base.adminToken === undefined ? {} : { token: base.adminToken }) } }),
    services,
  }
  const config = await validateConfig(input, baseDir, {})
  return Object.freeze({ ...config, fleet: base.fleet })
}
