import { expect } from 'chai'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { validateConfig } from '../../lib/config.js'

// The full annotated reference moved from the README to docs/config.md (issue 23).
const CONFIG_DOC = readFileSync(fileURLToPath(new URL('../../../docs/config.md', import.meta.url)), 'utf8')

describe('the config reference (docs/config.md)', () => {
  it('shows a config reference that the proxy accepts, with the defaults it applies', async () => {
    const block = /## Config[\s\S]*?```yaml\n([\s\S]*?)```/.exec(CONFIG_DOC)?.[1]
    expect(block, 'the yaml block under ## Config').to.be.a('string')
    const documented = await validateConfig(parse(block!), '/etc/zoo-proxy')
    // Written out in full, every documented default equals the one applied when it is left out.
    const minimal = await validateConfig(
      { admin: '127.0.0.1:9901', services: [{ name: 'example', path: '/services/example', match: { host: 'api.example.test', pathPrefix: '/api' }, healthCheck: { path: '/health' } }] },
      '/etc/zoo-proxy',
    )
    const plain = (x: unknown) => JSON.parse(JSON.stringify(x)) as unknown
    expect(plain(documented)).to.deep.equal(plain(minimal))
  })
})
