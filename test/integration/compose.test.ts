// docker/compose.yaml, checked by Compose itself (Debian's docker-compose: `config` needs no
// engine) and against the repository: every file it names exists, every port it publishes is one
// the proxy listens on, every command it runs is built, and the config it mounts is valid.

import { expect } from 'chai'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { loadConfig } from '../../lib/config.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const COMPOSE = path.join(ROOT, 'docker/compose.yaml')

interface ComposeService {
  build?: { context: string; dockerfile: string }
  image?: string
  entrypoint?: string[]
  command?: string[]
  ports?: string[]
  volumes?: string[]
}

describe('docker/compose.yaml', function () {
  this.timeout(30_000)
  let services: Record<string, ComposeService>

  before(() => {
    // -q: valid or a non-zero exit naming the problem; the full output is Compose's own reading.
    execFileSync('docker-compose', ['-f', COMPOSE, 'config', '-q'], { stdio: 'pipe' })
    services = (parseYaml(execFileSync('docker-compose', ['-f', COMPOSE, 'config'], { encoding: 'utf8' })) as { services: Record<string, ComposeService> }).services
  })

  it('is valid to Compose, with the ensemble, two proxies and three upstreams', () => {
    expect(Object.keys(services).sort()).to.deep.equal(['proxy1', 'proxy2', 'up-a', 'up-b', 'up-c', 'zk1', 'zk2', 'zk3'])
  })

  it('names only files that exist: the Dockerfile, its build context and the mounted config', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.build !== undefined) {
        expect(existsSync(path.join(s.build.context, s.build.dockerfile)), `${name}: ${s.build.dockerfile}`).to.equal(true)
        expect(path.resolve(s.build.context)).to.equal(path.resolve(ROOT))
      }
      for (const v of s.volumes ?? []) expect(existsSync(v.split(':')[0]!), `${name}: ${v}`).to.equal(true)
    }
  })

  it('mounts a valid config, and publishes exactly the ports that config listens on', async () => {
    const mounted = services.proxy1!.volumes!.find((v) => v.includes(':/etc/zoo-proxy/proxy.yaml'))!.split(':')[0]!
    const config = await loadConfig(mounted)
    const inside = [config.listen.port, config.admin!.port].sort()
    for (const name of ['proxy1', 'proxy2']) {
      const published = (services[name]!.ports ?? []).map((p) => Number(/:(\d+)\/tcp$/.exec(p)![1])).sort()
      expect(published, name).to.deep.equal(inside)
    }
    const hostPorts = ['proxy1', 'proxy2'].flatMap((n) => services[n]!.ports!.map((p) => p.split(':').slice(0, 2).join(':')))
    expect(new Set(hostPorts).size, 'host ports are not shared').to.equal(hostPorts.length)
  })

  it('builds a multi-stage, non-root image with production dependencies only', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'docker/Dockerfile'), 'utf8')
    expect(dockerfile.match(/^FROM /gm)).to.have.length(2)
    expect(dockerfile).to.match(/npm prune --omit=dev/)
    expect(dockerfile).to.match(/^USER node$/m)
  })

  it('runs only what the image builds: the Dockerfile entrypoint and the sample upstream', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'docker/Dockerfile'), 'utf8')
    const entry = /ENTRYPOINT \["node", "([^"]+)"\]/.exec(dockerfile)![1]!
    expect(existsSync(path.join(ROOT, entry)), entry).to.equal(true)
    for (const name of ['up-a', 'up-b', 'up-c']) {
      const [node, script] = services[name]!.entrypoint!
      expect(node).to.equal('node')
      expect(existsSync(path.join(ROOT, script!)), `${name}: ${script}`).to.equal(true)
      expect(services[name]!.command![1]).to.equal('zk1:2181,zk2:2181,zk3:2181')
    }
  })
})
