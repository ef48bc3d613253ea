// `npm run screenshot`: the README's picture of the status page, taken from the demo under load.
// Starts `npm run demo`'s script (on ports the kernel picks), sends it a steady light load with
// autocannon, waits until the page shows request rates, and screenshots it with Chromium (Debian's,
// driven by playwright-core, as the status page's test does).
//   node dist/scripts/screenshot.js [output.png]   (default docs/status-page.png)

import { spawn } from 'node:child_process'
import path from 'node:path'
import process from 'node:process'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { chromium } from 'playwright-core'
import { freePort } from './zookeeper.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const out = path.resolve(process.argv[2] ?? path.join(here, '..', '..', 'docs', 'status-page.png'))
/** Longest wait for the demo to print where it listens, and for the page to show rates. */
const DEADLINE_MS = 60_000

const demo = spawn(process.execPath, [path.join(here, 'demo.js')], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, ZP_DEMO_LISTEN: '127.0.0.1:0', ZP_DEMO_ADMIN: '127.0.0.1:0', ZP_DEMO_ZK_PORT: String(await freePort()) },
})
// Never left running: the demo stops its own children (and removes its folder) on SIGINT.
process.once('exit', () => demo.kill('SIGINT'))
let printed = ''
demo.stdout!.on('data', (d: Buffer) => (printed += d.toString('utf8')))
const exited = new Promise((resolve) => demo.once('exit', resolve))

async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + DEADLINE_MS
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const proxyUrl = await until('the demo to listen', () => /zoo-proxy \(PID \d+\) on (http:\/\/\S+\/)/.exec(printed)?.[1])
const pageUrl = await until('the status page URL', () => /status page: +(http:\/\/\S+\/)/.exec(printed)?.[1])
// A steady, light load (about 150 requests a second): what a page of a live service looks like.
const load = autocannon({ url: `${proxyUrl}hello`, connections: 3, overallRate: 150, duration: 30 }, () => {})
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] })
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 300 } })
  await page.goto(pageUrl)
  // Rates are the change between two reads a second apart: wait until every instance shows one.
  await until('request rates on the page', async () => {
    const rates = await page.locator('td[data-label="req/s"]').allTextContents()
    return rates.length === 3 && rates.every((r) => Number(r) > 0) ? true : undefined
  })
  await page.screenshot({ path: out, fullPage: true })
  console.log(`wrote ${out}`)
} finally {
  await browser.close()
  load.stop()
  demo.kill('SIGINT')
  await exited
}
