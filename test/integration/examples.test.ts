// Every config in examples/ passes `zoo-proxy check` (the CLI, as a user runs it): copied beside the
// files it names (certificates made for the test, a token file), so what is checked is the example
// as written.

import { expect } from 'chai'
import { copyFileSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { makeCerts } from '../support/certs.js'
import { spawnNode, tempDir, useClosers } from '../support/helpers.js'

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))
const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url))

describe('the example configs', function () {
  this.timeout(30_000)
  const closers = useClosers()
  const files = readdirSync(EXAMPLES).filter((f) => /\.ya?ml$|\.json$/.test(f))

  it('are there: a minimal one, two services, TLS, Curator and workers', () => {
    expect(files).to.include.members(['minimal.yaml', 'two-services.yaml', 'tls.yaml', 'curator.yaml', 'workers.yaml'])
  })

  for (const file of files)
    it(`passes zoo-proxy check: ${file}`, async () => {
      const dir = tempDir(closers, 'zoo-proxy-example-')
      copyFileSync(path.join(EXAMPLES, file), path.join(dir, file))
      if (file === 'tls.yaml') {
        const certs = makeCerts('localhost')
        closers.push(() => certs.remove())
        copyFileSync(certs.cert, path.join(dir, 'proxy.crt'))
        copyFileSync(certs.key, path.join(dir, 'proxy.key'))
        copyFileSync(certs.caCert, path.join(dir, 'instances-ca.crt'))
        writeFileSync(path.join(dir, 'admin.token'), 'example-token\n')
      }
      const p = spawnNode(closers, [CLI, 'check', '-c', path.join(dir, file)])
      const code = await p.exited
      expect(code, p.stderr()).to.equal(0)
    })
})
