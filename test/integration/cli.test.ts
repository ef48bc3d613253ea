import { expect } from 'chai'
import { writeFileSync } from 'node:fs'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { effectiveConfig, validateConfig } from '../../lib/config.js'
import { listeningPorts, putNode, send, spawnNode, startUpstream, tempDir, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'

const CLI = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))

describe('command line', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()
  const closers = useClosers()

  /** The CLI as a child process, killed after the test if it is still running. */
  function run(args: string[]) {
    const p = spawnNode(closers, [CLI, ...args])
    return {
      ...p,
      done: p.exited.then((code) => ({ code, stdout: p.stdout(), stderr: p.stderr() })),
      kill: (sig: NodeJS.Signals) => p.child.kill(sig),
    }
  }

  function tmpFile(name: string, text: string): string {
    const file = path.join(tempDir(closers, 'zoo-proxy-cli-'), name)
    writeFileSync(file, text)
    return file
  }

  /** A port this test holds a listener on, so nobody else can bind it. */
  async function heldPort(): Promise<number> {
    const server = net.createServer((s) => s.destroy())
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    closers.push(() => new Promise((r) => server.close(r)))
    return (server.address() as AddressInfo).port
  }

  it('exits 2 with one line per problem, naming the field, before binding any port', async () => {
    // Both ports are taken: a proxy that tried to bind before validating would fail with
    // EADDRINUSE (exit 1), not with the config's problems.
    const [listen, admin] = [await heldPort(), await heldPort()]
    const file = tmpFile('bad.yaml', `listen: 127.0.0.1:${listen}\nadmin: 127.0.0.1:${admin}\nservices:\n  - name: a\n    path: /a\n    strategy: nope\n  - name: a\n    path: /b\n    match: { pathPrefix: /b }\n    colour: red\n`)
    const { code, stdout, stderr } = await run(['--config', file]).done
    expect(code).to.equal(2)
    expect(stderr.trim().split('\n')).to.deep.equal(['services[0].strategy: unknown strategy "nope"', 'services[1].colour: unknown key'])
    expect(stdout).to.equal('')
  })

  it('exits 1 naming the port when the listen port is taken', async () => {
    const listen = await heldPort()
    const svc = uniquePath()
    const file = tmpFile('taken.yaml', `listen: 127.0.0.1:${listen}\nzookeeper:\n  connect: ${ctx.zk.connectString}\nservices:\n  - name: a\n    path: ${svc}\n`)
    const { code, stdout } = await run(['--config', file]).done
    expect(code).to.equal(1)
    expect(stdout).to.include('EADDRINUSE')
  })

  it('exits 2 for a missing file, unparsable YAML and a missing services list', async () => {
    const [missing, unparsable, noServices] = await Promise.all([
      run(['--config', '/nonexistent/proxy.yaml']).done,
      run(['--config', tmpFile('x.yaml', 'services: [')]).done,
      run(['--config', tmpFile('x.json', '{"listen": "127.0.0.1:1"}')]).done,
    ])
    expect([missing.code, unparsable.code, noServices.code]).to.deep.equal([2, 2, 2])
    expect(noServices.stderr).to.match(/^services: /m)
  })

  it('exits 2 for bad arguments', async () => {
    const runs = await Promise.all([
      run(['--nope']).done,
      run(['register', '--path', '/x']).done,
      run(['register', '--zookeeper', '127.0.0.1:1', '--path', '/x', '--host', 'h', '--port', 'http']).done,
    ])
    expect(runs.map((r) => r.code)).to.deep.equal([2, 2, 2])
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

  it('runs the proxy from a config file and exits 0 on SIGTERM', async () => {
    const up = await startUpstream('a')
    closers.push(() => up.close())
    const svc = uniquePath()
    await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: up.port })
    const file = tmpFile('proxy.yaml', `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nzookeeper:\n  connect: ${ctx.zk.connectString}\nservices:\n  - name: example\n    path: ${svc}\n`)
    const proc = run(['--config', file])
    const { port, adminPort } = await listeningPorts(proc)
    await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200, 'ready')
    expect((await send(port)).body).to.equal('a')
    proc.kill('SIGTERM')
    expect((await proc.done).code).to.equal(0)
  })

  for (const signal of ['SIGTERM', 'SIGINT'] as const)
    it(`writes an access line while the proxy runs at one request, and loses none on ${signal}`, async () => {
      const up = await startUpstream('a')
      closers.push(() => up.close())
      const svc = uniquePath()
      await putNode(ctx.admin, `${svc}/a`, { host: '127.0.0.1', port: up.port })
      const file = tmpFile('proxy.yaml', `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nlog: { access: true }\nzookeeper:\n  connect: ${ctx.zk.connectString}\nservices:\n  - name: example\n    path: ${svc}\n`)
      const proc = run(['--config', file])
      const { port, adminPort } = await listeningPorts(proc)
      await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200, 'ready')
      const accessLines = () => proc.stdout().split('\n').filter((l) => l.includes('"msg":"access"'))
      // One request, far below the 4 KiB a write gathers: the line must come out on its own.
      await send(port, '/first')
      await waitFor(() => accessLines().length === 1, 'the access line of a lone request, with the proxy running')
      expect(JSON.parse(accessLines()[0]!)).to.include({ path: '/first', status: 200 })
      // The next ones are still in the buffer when the signal comes: the exit writes them.
      for (let i = 0; i < 3; i++) await send(port, `/then-${i}`)
      proc.kill(signal)
      expect((await proc.done).code).to.equal(0)
      expect(accessLines().map((l) => (JSON.parse(l) as { path: string }).path)).to.deep.equal(['/first', '/then-0', '/then-1', '/then-2'])
    })

  it('registers an instance with `register` and removes it on SIGTERM', async () => {
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
