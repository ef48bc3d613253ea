import { expect } from 'chai'
import { validateConfig } from '../../lib/config.js'
import { ConfigError } from '../../lib/errors.js'

/** The problems validateConfig names for `input`; fails the test when the config is accepted. */
export async function configProblems(input: unknown, baseDir: string = process.cwd()): Promise<string[]> {
  try {
    await validateConfig(input, baseDir)
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError)
    return [...(err as ConfigError).problems]
  }
  throw new Error('expected the config to be rejected')
}
