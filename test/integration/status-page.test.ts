// The status page (issue 13), in real headless Chromium (Debian's, driven by playwright-core): it
// loads from the admin listener alone, shows an instance that joins, and marks one that is drained.

import { expect } from 'chai'
import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import type { Browser } from 'playwright-core'
import { makeConfig, putNode, send, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'

const CHROMIUM = '/usr/bin/chromium'

describe('the status page (headless Chromium, real ZooKeeper)', function () {
  this.timeout(60_000)
  const ctx = useZooKeeper()
  const closers = useClosers()
  let browser: Browser

  before(async function () {
    this.timeout(60_000)
    expect(existsSync(CHROMIUM), `${CHROMIUM} (Debian's chromium; scripts/ensure-zookeeper.sh installs it)`).to.equal(true)
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
  })
  after(async () => browser?.close())

  it('loads, shows an instance that joins and marks one that is drained, at a phone width and a wall width', async () => {
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    closers.push(() => a.close(), () => b.close())
    const path = uniquePath('status')
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: a.port })
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path, strategy: 'least-loaded' }]))
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    for (let i = 0; i < 5; i++) await send(p.port)
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } })
    closers.push(() => page.close())
    const external: string[] = []
    page.on('request', (r) => {
      if (!r.url().startsWith(`http://127.0.0.1:${p.adminPort}/`)) external.push(r.url())
    })
    await page.goto(`http://127.0.0.1:${p.adminPort}/`)
    const row = (port: number) => page.locator(`section[data-service="example"] tr[data-instance="127.0.0.1:${port}"]`)
    await row(a.port).waitFor()
    expect(await page.locator('#session').textContent()).to.equal('connected')
    expect(await page.locator('section[data-service="example"] h2').textContent()).to.include('strategy least-loaded')
    expect(await row(a.port).locator('td[data-state]').getAttribute('data-state')).to.equal('up')
    // An instance joins: on the page within a few refreshes, without reloading it.
    await putNode(ctx.admin, `${path}/b`, { host: '127.0.0.1', port: b.port })
    await row(b.port).waitFor({ timeout: 10_000 })
    // One is drained in ZooKeeper, the other by a run-time override.
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: a.port, state: 'draining' })
    await waitFor(async () => (await row(a.port).locator('td[data-state]').getAttribute('data-state')) === 'draining', 'a marked draining')
    expect((await fetch(`http://127.0.0.1:${p.adminPort}/services/example/instances/127.0.0.1:${b.port}`, { method: 'PUT', body: '{"state":"draining"}' })).status).to.equal(200)
    await waitFor(async () => (await row(b.port).locator('[data-override]').count()) === 1, 'b marked as overridden')
    expect(await row(b.port).locator('td[data-state]').getAttribute('data-state')).to.equal('draining')
    // A weight-0 override is a choice, not a fault: "drained" on the page, in /upstreams and in the
    // metrics alike, never a red "unhealthy"; and both instances still pass their health.
    expect((await fetch(`http://127.0.0.1:${p.adminPort}/services/example/instances/127.0.0.1:${b.port}`, { method: 'PUT', body: '{"state":"up","weight":0}' })).status).to.equal(200)
    await waitFor(async () => (await row(b.port).locator('td[data-state]').getAttribute('data-state')) === 'drained', 'b marked drained')
    const colours = await page.evaluate(`[...document.querySelectorAll('td[data-state]')].map((td) => getComputedStyle(td).color)`)
    const bad = await page.evaluate(`(() => { const s = document.createElement('span'); s.className = 'unhealthy'; document.body.append(s); const c = getComputedStyle(s).color; s.remove(); return c })()`)
    expect(colours).to.not.include(bad)
    const report = (await (await fetch(`http://127.0.0.1:${p.adminPort}/upstreams`)).json()) as { services: { example: { instances: { port: number; state: string; healthy: boolean; ejected: boolean }[] } } }
    const byPort = new Map(report.services.example.instances.map((i) => [i.port, i]))
    expect(byPort.get(a.port)).to.include({ state: 'draining', healthy: true, ejected: false })
    expect(byPort.get(b.port)).to.include({ state: 'drained', healthy: true, ejected: false })
    const metrics = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text()
    for (const [state, n] of Object.entries({ up: 0, draining: 1, drained: 1, ejected: 0, unhealthy: 0, override: 1 })) {
      expect(metrics).to.include(`zoo_proxy_instances{service="example",state="${state}"} ${n}`)
    }
    // Readable at a phone's width and a laptop's (and a wall's): nothing scrolls sideways, not the
    // page nor a table inside its card, and every field of every instance is on the screen.
    const unreadable = `(() => {
      const w = window.innerWidth, bad = [];
      if (document.documentElement.scrollWidth > w) bad.push('the page scrolls: ' + document.documentElement.scrollWidth + ' > ' + w);
      for (const t of document.querySelectorAll('.table')) if (t.scrollWidth > t.clientWidth) bad.push('a table scrolls');
      for (const td of document.querySelectorAll('tbody td')) {
        const r = td.getBoundingClientRect();
        if (r.width === 0 || r.height === 0 || r.left < 0 || r.right > w + 0.5) bad.push(td.dataset.label + ' off screen: ' + r.left + '..' + r.right);
      }
      return bad;
    })()`
    for (const width of [390, 1280, 1920]) {
      await page.setViewportSize({ width, height: 844 })
      expect(await page.evaluate(unreadable), `at ${width} px`).to.deep.equal([])
      expect(await row(b.port).locator('td[data-state]').isVisible(), `state at ${width} px`).to.equal(true)
    }
    expect(external).to.deep.equal([])
  })

  it('opens in a browser with an admin token set, once the token is given as the password of its login prompt', async () => {
    const a = await startUpstream('a')
    closers.push(() => a.close())
    const path = uniquePath('status-token')
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: a.port })
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'guarded', path }], { admin: { listen: '127.0.0.1:0', token: 'page-token-123' } }))
    closers.push(() => p.close())
    // Without the token: the page asks for it (Basic), and shows nothing.
    const bare = await fetch(`http://127.0.0.1:${p.adminPort}/`)
    expect(bare.status).to.equal(401)
    expect(bare.headers.get('www-authenticate')).to.match(/^Basic realm="zoo-proxy admin"/)
    const wrong = await browser.newContext({ httpCredentials: { username: 'ops', password: 'not-the-token' } })
    closers.push(() => wrong.close())
    expect((await (await wrong.newPage()).goto(`http://127.0.0.1:${p.adminPort}/`))!.status()).to.equal(401)
    // With it, as a browser sends it after its prompt: the page and its own requests get through.
    const right = await browser.newContext({ httpCredentials: { username: 'ops', password: 'page-token-123' } })
    closers.push(() => right.close())
    const page = await right.newPage()
    expect((await page.goto(`http://127.0.0.1:${p.adminPort}/`))!.status()).to.equal(200)
    await page.locator(`section[data-service="guarded"] tr[data-instance="127.0.0.1:${a.port}"]`).waitFor()
    expect(await page.locator('#session').textContent()).to.equal('connected')
  })
})
