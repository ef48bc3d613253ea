import { expect } from 'chai'
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { effectiveConfig, validateConfig } from '../../lib/config.js'
import { freePort } from '../../scripts/zookeeper.js'
import { putNode, send, startUpstream, uniquePath, useZooKeeper, waitFor } from '../support/helpers.js'

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))

function run(args: string[]): { done: Promise<{ code: number | null; stdout: string; stderr: string }>; kill(sig: NodeJS.Signals): void; output(): string } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  return {
    done: new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr }))),
    kill: (sig) => child.kill(sig),
    output: () => stdout + stderr,
  }
}

function tmpFile(name: string, text: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-cli-'))
  const file = path.join(dir, name)
  writeFileSync(file, text)
  return file
}

describe('command line', function () {
  const ctx = useZooKeeper()

  it('exits 2 with one line per problem, naming the field, before binding any port', async () => {
    const port = await freePort()
    const file = tmpFile('bad.yaml', `listen: 127.0.0.1:${port}\nservices:\n  - name: a\n    path: /a\n    strategy: nope\n  - name: a\n    path: /b\n    match: { pathPrefix: /b }\n    colour: red\n`)
    const { code, stderr } = await run(['--config', file]).done
    expect(code).to.equal(2)
    const lines = stderr.trim().split('\n')
    expect(lines).to.include('services[0].strategy: unknown strategy "nope"')
    expect(lines).to.include('services[1].colour: unknown key')
  })

  it('exits 2 for a missing file, unparsable YAML and a missing services list', async () => {
    expect((await run(['--config', '/nonexistent/proxy.yaml']).done).code).to.equal(2)
    expect((await run(['--config', tmpFile('x.yaml', 'services: [')]).done).code).to.equal(2)
    const r = await run(['--config', tmpFile('x.json', '{"listen": "127.0.0.1:1"}')]).done
    expect(r.code).to.equal(2)
    expect(r.stderr).to.match(/^services: /m)
  })

  it('exits 2 for bad arguments', async () => {
    expect((await run(['--nope']).done).code).to.equal(2)
    expect((await run(['register', '--path', '/x']).done).code).to.equal(2)
    expect((await run(['register', '--zookeeper', '127.0.0.1:1', '--path', '/x', '--host', 'h', '--port', 'http']).done).code).to.equal(2)
  })

  it('checks a good config with `check`, prints the effective config as YAML and exits 0', async () => {
    const file = tmpFile('ok.json', JSON.stringify({ admin: '[::1]:9901', services: [{ name: 'a', path: '/a', strategy: { name: 'least-loaded', choices: 2 } }] }))
    const r = await run(['check', '--config', file]).done
    expect(r.code, r.stderr).to.equal(0)
    const printed = parseYaml(r.stdout) as Record<string, unknown>
    // Every default is written out...
    expect(printed).to.include({ listen: '127.0.0.1:8080', admin: '[::1]:9901', workers: 1, shutdownTimeoutMs: 10000, clientBodyTimeoutMs: 60000 })
    const service = (printed.services as Record<string, unknown>[])[0]!
    expect(service).to.include({ name: 'a', timeoutMs: 30000, keepLastOnEmpty: true })
    expect(service.strategy).to.deep.equal({ name: 'least-loaded', choices: 2 })
    expect(service.retry).to.include({ attempts: 3, perTryTimeoutMs: 30000 })
    // ...and read again, it is the same config: printed again, the same YAML.
    expect(effectiveConfig(await validateConfig(printed, os.tmpdir()))).to.deep.equal(printed)
  })

  it('runs the proxy from a config file and exits 0 on SIGTERM', async function () {
    this.timeout(30_000)
    const up = await startUpstream('a')
    const svc = uniquePath()
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: up.port })
    const port = await freePort()
    const admin = await freePort()
    const file = tmpFile('proxy.yaml', `listen: 127.0.0.1:${port}\nadmin: 127.0.0.1:${admin}\nzookeeper:\n  connect: ${ctx.zk.connectString}\nservices:\n  - name: example\n    path: ${svc}\n`)
    const proc = run(['--config', file])
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${admin}/readyz`)).status === 200, 'ready')
      expect((await send(port)).body).to.equal('a')
    } finally {
      proc.kill('SIGTERM')
    }
    const { code } = await proc.done
    expect(code).to.equal(0)
    await up.close()
  })

  it('registers an instance with `register` and removes it on SIGTERM', async function () {
    this.timeout(30_000)
    const svc = uniquePath()
    const proc = run(['register', '--zookeeper', ctx.zk.connectString, '--path', svc, '--host', '127.0.0.1', '--port', '9001', '--weight', '2'])
    const node = `${svc}/127.0.0.1:9001`
    const data = await waitFor(() => ctx.admin.getData(node), 'the instance node')
    expect(JSON.parse(data.toString())).to.deep.equal({ host: '127.0.0.1', port: 9001, weight: 2, state: 'up' })
    proc.kill('SIGTERM')
    expect((await proc.done).code).to.equal(0)
    expect(await ctx.admin.exists(node)).to.equal(false)
  })
})
