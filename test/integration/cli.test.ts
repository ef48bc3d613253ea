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
    const file = tmpFile('ok.json', JSON.stringify({ admin: '127.0.0.1:9901', services: [{ name: 'a', path: '/a', strategy: { name: 'least-loaded', choices: 2 } }] }))
    const r = await run(['check', '--config', file]).done
    expect(r.code, r.stderr).to.equal(0)
    const printed = parseYaml(r.stdout) as Record<string, unknown>
    // Every default is written out...
    expect(printed).to.include({ listen: '127.0.0.1:8080', admin: '127.0.0.1:9901', workers: 1, shutdownTimeoutMs: 10000, clientBodyTimeoutMs: 60000 })
    const service = (printed.services as Record<string, unknown>[])[0]!
    expect(service).to.include({ name: 'a', timeoutMs: 30000, keepLastOnEmpty: true })
    expect(service.strategy).to.deep.equal({ name: 'least-loaded', choices: 2 })
    expect(service.retry).to.include({ attempts: 3, perTryTimeoutMs: 30000 })
    // ...and read again, it is the same config: printed again, the same YAML.
    expect(effectiveConfig(await validateConfig(printed, os.tmpdir()))).to.deep.equal(printed)
  })

  it('writes out every default of every built-in strategy in the effective config', async () => {
    const strategies: [unknown, Record<string, unknown>][] = [
      ['round-robin', { name: 'round-robin' }],
      ['random', { name: 'random' }],
      ['weighted', { name: 'weighted' }],
      ['least-loaded', { name: 'least-loaded', choices: 2 }],
      [{ name: 'least-loaded', choices: 'all' }, { name: 'least-loaded', choices: 'all' }],
      ['consistent-hash', { name: 'consistent-hash', key: 'client-address', loadFactor: 1.25 }],
      // `key` wins over its short forms, so with `header` it is not written in.
      [{ name: 'consistent-hash', header: 'x-user' }, { name: 'consistent-hash', header: 'x-user', loadFactor: 1.25 }],
      [{ name: 'consistent-hash', key: 'cookie:sid', loadFactor: 2 }, { name: 'consistent-hash', key: 'cookie:sid', loadFactor: 2 }],
    ]
    const services = strategies.map(([strategy], i) => ({ name: `s${i}`, path: `/s${i}`, strategy, ...(i === 0 ? {} : { match: { pathPrefix: `/s${i}` } }) }))
    const r = await run(['check', '--config', tmpFile('strategies.json', JSON.stringify({ services }))]).done
    expect(r.code, r.stderr).to.equal(0)
    const printed = parseYaml(r.stdout) as { services: { strategy: unknown }[] }
    expect(printed.services.map((s) => s.strategy)).to.deep.equal(strategies.map(([, effective]) => effective))
    expect(effectiveConfig(await validateConfig(printed, os.tmpdir()))).to.deep.equal(printed)
  })

  it('reports every problem in one round, strategy options with the schema, and offers the closest known word', async () => {
    const file = tmpFile(
      'typos.yaml',
      [
        'zookeeper:',
        '  conect: 127.0.0.1:2181',
        'services:',
        '  - name: a',
        '    path: /a',
        '    stratgy: random',
        '    strategy: { name: least-loaded, choice: 3 }',
        '  - name: b',
        '    path: /b',
        '    match: { pathPrefix: /b }',
        '    strategy: round-robbin',
        '    retrys: {}',
        '  - name: c',
        '    path: /c',
        '    match: { pathPrefix: /c }',
        '    strategy: { name: consistent-hash, loadFactor: 0.5 }',
        '  - name: d',
        '    path: /d',
        '    match: { pathPrefix: /d }',
        '    strategy: nothing-like-it',
        '    colour: red',
        '',
      ].join('\n'),
    )
    const { code, stdout, stderr } = await run(['check', '--config', file]).done
    expect(code).to.equal(2)
    expect(stdout).to.equal('')
    expect(stderr.trim().split('\n').sort()).to.deep.equal(
      [
        'zookeeper.conect: unknown key (did you mean "connect"?)',
        'services[0].stratgy: unknown key (did you mean "strategy"?)',
        'services[0].strategy.choice: unknown option "choice" (did you mean "choices"?)',
        'services[1].strategy: unknown strategy "round-robbin" (did you mean "round-robin"?)',
        'services[1].retrys: unknown key (did you mean "retry"?)',
        'services[2].strategy.loadFactor: must be a number >= 1',
        // Nothing close: no guess.
        'services[3].strategy: unknown strategy "nothing-like-it"',
        'services[3].colour: unknown key',
      ].sort(),
    )
  })

  it('says what a field of the wrong type expected, in the config\'s words and units', async () => {
    const config = {
      listen: { host: 'x' },
      shutdownTimeoutMs: '30s',
      zookeeper: { sessionTimeoutMs: '10s', keepLastOnEmpty: 'yes', massRemoval: { minKeepPercent: '50%' } },
      limits: { maxBodyBytes: '1MB' },
      log: 5,
      services: [{ name: 'a', path: '/a', timeoutMs: '30s', retry: { attempts: 'three', backoffMs: null, bufferBytes: [] }, outlier: { baseEjectionMs: true } }],
    }
    const { code, stderr } = await run(['check', '--config', tmpFile('types.json', JSON.stringify(config))]).done
    expect(code).to.equal(2)
    expect(stderr.trim().split('\n').sort()).to.deep.equal(
      [
        'listen: expected text or a number, got a mapping',
        'shutdownTimeoutMs: expected milliseconds as a number, got "30s"',
        'zookeeper.sessionTimeoutMs: expected milliseconds as a number, got "10s"',
        'zookeeper.keepLastOnEmpty: expected true or false, got "yes"',
        'zookeeper.massRemoval.minKeepPercent: expected a percentage as a number, got "50%"',
        'limits.maxBodyBytes: expected bytes as a number, got "1MB"',
        'log: expected a mapping (key: value), got 5',
        'services[0].timeoutMs: expected milliseconds as a number, got "30s"',
        'services[0].retry.attempts: expected a number, got "three"',
        'services[0].retry.backoffMs: expected milliseconds as a number, got an empty value',
        'services[0].retry.bufferBytes: expected bytes as a number, got a list',
        'services[0].outlier.baseEjectionMs: expected milliseconds as a number, got true',
      ].sort(),
    )
  })

  it('shows the line of a YAML syntax error with a caret under it', async () => {
    const broken = [
      ['listen: 127.0.0.1:8080', 'services:', '  - name: a', '    path: /a', '  strategy: x: y'],
      ['services:', '  - name: a', '    path: /a', '   oops: 1'],
      ['listen: 127.0.0.1:8080', 'listen: 127.0.0.1:8081', 'services: []'],
      ['services:', '  - name: a', '\tpath: /a'],
    ]
    const results = await Promise.all(broken.map((lines, i) => run(['check', '--config', tmpFile(`broken-${i}.yaml`, `${lines.join('\n')}\n`)]).done))
    for (const [i, r] of results.entries()) {
      expect(r.code, r.stderr).to.equal(2)
      const out = r.stderr.trimEnd().split('\n')
      expect(out[0]).to.match(/^\(file\): .* is not valid YAML: .* at line \d+, column \d+:$/)
      const line = Number(/at line (\d+)/.exec(out[0]!)![1])
      // The snippet holds the line the error is on, as written, and ends with the caret.
      expect(out.slice(1).map((l) => l.slice(2))).to.include(broken[i]![line - 1])
      expect(out.at(-1)).to.match(/^ *\^+$/)
    }
  })

  it('exits 2 at check naming the field when listen or admin is an address this machine cannot listen on', async () => {
    // 999.1.1.1 and .invalid do not resolve; 192.0.2.1 (TEST-NET-1, RFC 5737) is nobody's address.
    const bad = ['999.1.1.1:8080', 'no-such-host.invalid:80', '192.0.2.1:80']
    const cases = bad.flatMap((address) => [
      { field: 'listen', config: { listen: address, services: [{ name: 'a', path: '/a' }] } },
      { field: 'admin', config: { admin: { listen: address }, services: [{ name: 'a', path: '/a' }] } },
    ])
    const results = await Promise.all(cases.map((c, i) => run(['check', '--config', tmpFile(`address-${i}.json`, JSON.stringify(c.config))]).done))
    for (const [i, r] of results.entries()) {
      const host = bad[Math.floor(i / 2)]!.replace(/:\d+$/, '')
      expect(r.code, r.stderr).to.equal(2)
      expect(r.stdout).to.equal('')
      expect(r.stderr).to.match(new RegExp(`^${cases[i]!.field}: cannot listen on ${host.replaceAll('.', '\\.')}: [A-Z_]+ \\(`))
    }
    // A port someone else holds is start's problem, not check's: the address itself is fine.
    const held = await heldPort()
    const ok = await run(['check', '--config', tmpFile('held.json', JSON.stringify({ listen: `127.0.0.1:${held}`, admin: '127.0.0.1:0', services: [{ name: 'a', path: '/a' }] }))]).done
    expect(ok.code, ok.stderr).to.equal(0)
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
