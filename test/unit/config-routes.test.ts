import { expect } from 'chai'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { effectiveConfig, validateConfig } from '../../lib/config.js'
import { configProblems } from '../support/config-problems.js'

const problems = configProblems

const stable = { name: 'api', path: '/services/api' }
const canary = { name: 'api-canary', path: '/services/api-canary', routes: [] }

/** A config whose services[0] has `route` as its only route, beside a canary service. */
const withRoute = (route: object) => ({ services: [{ ...stable, routes: [route] }, canary] })

/** Exactly one problem, on `field`, its message matching `message`. */
async function refusedAt(input: unknown, field: string, message: RegExp): Promise<void> {
  const p = await problems(input)
  expect(p, p.join('\n')).to.have.length(1)
  expect(p[0]!.startsWith(`${field}: `), p[0]).to.equal(true)
  expect(p[0]!.slice(field.length + 2)).to.match(message)
}

describe('config: routes', () => {
  it('accepts the documented canary, and prints it so that it validates again the same', async () => {
    const input = {
      services: [
        {
          ...stable,
          match: { pathPrefix: '/api' },
          routes: [
            { match: { pathPrefix: '/api', headers: { 'X-Canary': 'always' } }, rewrite: { stripPrefix: true }, to: [{ service: 'api-canary', weight: 1 }] },
            { match: { pathPrefix: '/api', methods: ['GET', 'HEAD'] }, rewrite: { prefix: '/v2' }, to: [{ service: 'api', weight: 90 }, { service: 'api-canary', weight: 10 }], hashKey: 'header:x-user' },
            { match: { headers: { 'x-ver': { regex: 'v[0-9]+\\.(1|2)' }, 'x-user': { prefix: 'beta-' } } } },
          ],
        },
        canary,
      ],
    }
    const c = await validateConfig(input, '/')
    expect(c.services[0]!.routes![0]!.match!.headers).to.deep.equal({ 'X-Canary': { exact: 'always' } })
    expect(c.services[1]!.routes).to.deep.equal([])
    const again = await validateConfig(effectiveConfig(c), '/')
    expect(effectiveConfig(again)).to.deep.equal(effectiveConfig(c))
  })

  it('accepts the examples of docs/config.md#routes and the README as written', async () => {
    const read = (file: string) => readFileSync(fileURLToPath(new URL(`../../../${file}`, import.meta.url)), 'utf8')
    const docs = /## Routes[\s\S]*?```yaml\n([\s\S]*?)```/.exec(read('docs/config.md'))?.[1]
    const readme = /```yaml\n(services:\n {2}- name: shop\n[\s\S]*?)```/.exec(read('README.md'))?.[1]
    for (const block of [docs, readme]) {
      expect(block).to.be.a('string')
      const c = await validateConfig(parse(block!), '/')
      expect(c.services.map((s) => s.name)).to.deep.equal(['shop', 'shop-canary'])
    }
  })

  it('names an unknown service in a route', async () => {
    await refusedAt(withRoute({ to: [{ service: 'nope', weight: 1 }] }), 'services[0].routes[0].to[0].service', /unknown service "nope"/)
  })

  it('names a service listed twice in one split', async () => {
    await refusedAt(withRoute({ to: [{ service: 'api', weight: 1 }, { service: 'api', weight: 2 }] }), 'services[0].routes[0].to[1].service', /listed twice/)
  })

  it('bounds each weight to whole numbers 0..100', async () => {
    for (const weight of [-1, 101, 1e9, 0.5, Number.MAX_SAFE_INTEGER, '10', null]) {
      await refusedAt(withRoute({ to: [{ service: 'api', weight }] }), 'services[0].routes[0].to[0].weight', /./)
    }
  })

  it('refuses a split whose weights add up to 0', async () => {
    await refusedAt(withRoute({ to: [{ service: 'api', weight: 0 }, { service: 'api-canary', weight: 0 }] }), 'services[0].routes[0].to', /add up to 0/)
  })

  it('bounds the number of services in a split', async () => {
    const to = Array.from({ length: 17 }, () => ({ service: 'api', weight: 1 }))
    await refusedAt(withRoute({ to }), 'services[0].routes[0].to', /./)
  })

  it('refuses two routes that match the same requests, wherever they are written', async () => {
    const same = { pathPrefix: '/p', methods: ['GET', 'HEAD'], headers: { 'x-a': '1' } }
    const reordered = { headers: { 'X-A': { exact: '1' } }, methods: ['HEAD', 'GET'], pathPrefix: '/p' }
    await refusedAt({ services: [{ ...stable, match: same }, { ...canary, routes: [{ match: reordered }] }] }, 'services[1].routes[0].match', /same match as services\[0\]\.match/)
    expect(await validateConfig(withRoute({ match: { host: 'a.test' } }), '/')).to.be.an('object')
  })

  it('refuses a second default route, also one written as a route', async () => {
    await refusedAt({ services: [stable, { ...canary, routes: [{ to: [{ service: 'api', weight: 1 }] }] }] }, 'services[1].routes[0].match', /only one service may be the default route/)
  })

  it('refuses backtracking and broken regexes, naming the header', async () => {
    for (const regex of ['(a)\\1', '(?=x)x', '(?<!x)y', '[', 'a{2000}', 'x'.repeat(257)]) {
      await refusedAt(withRoute({ match: { headers: { 'x-canary': { regex } } } }), 'services[0].routes[0].match.headers.x-canary.regex', /./)
    }
  })

  it('takes exactly one of exact, prefix, regex for a header', async () => {
    for (const rule of [{}, { exact: 'a', prefix: 'b' }, { prefix: 'a', regex: 'b' }]) {
      await refusedAt(withRoute({ match: { headers: { 'x-a': rule } } }), 'services[0].routes[0].match.headers.x-a', /exactly one of exact, prefix, regex/)
    }
    const p = await problems(withRoute({ match: { headers: { 'x-a': { suffix: 'a' } } } }))
    expect(p).to.include('services[0].routes[0].match.headers.x-a.suffix: unknown key')
  })

  it('bounds header rules: their number, their values, their names', async () => {
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`x-h${i}`, '1']))
    await refusedAt(withRoute({ match: { headers: many } }), 'services[0].routes[0].match.headers', /at most 16/)
    await refusedAt(withRoute({ match: { headers: { 'x-a': 'v'.repeat(1025) } } }), 'services[0].routes[0].match.headers.x-a.exact', /./)
    await refusedAt(withRoute({ match: { headers: { 'x-a': { prefix: 'v'.repeat(1025) } } } }), 'services[0].routes[0].match.headers.x-a.prefix', /./)
    await refusedAt(withRoute({ match: { headers: { 'bad name': '1' } } }), 'services[0].routes[0].match.headers.bad name', /header name/)
    await refusedAt(withRoute({ match: { headers: { 'x-a': '1', 'X-A': '2' } } }), 'services[0].routes[0].match.headers.X-A', /same header/)
  })

  it('takes methods as written in capitals, each once, at most 16', async () => {
    await refusedAt(withRoute({ match: { methods: ['get'] } }), 'services[0].routes[0].match.methods[0]', /capitals/)
    await refusedAt(withRoute({ match: { methods: [] } }), 'services[0].routes[0].match.methods', /at least one/)
    await refusedAt(withRoute({ match: { methods: ['GET', 'GET'] } }), 'services[0].routes[0].match.methods', /twice/)
    const many = Array.from({ length: 17 }, (_, i) => `M${i}`)
    await refusedAt(withRoute({ match: { methods: many } }), 'services[0].routes[0].match.methods', /./)
  })

  it('refuses a rewrite without a pathPrefix, or with neither or both forms', async () => {
    await refusedAt(withRoute({ rewrite: { stripPrefix: true } }), 'services[0].routes[0].rewrite', /needs match.pathPrefix/)
    const under = { match: { pathPrefix: '/api' } }
    await refusedAt(withRoute({ ...under, rewrite: {} }), 'services[0].routes[0].rewrite', /one of them/)
    await refusedAt(withRoute({ ...under, rewrite: { stripPrefix: true, prefix: '/v2' } }), 'services[0].routes[0].rewrite', /one of them/)
    await refusedAt(withRoute({ ...under, rewrite: { stripPrefix: false } }), 'services[0].routes[0].rewrite.stripPrefix', /must be true/)
  })

  it('refuses a rewrite prefix a decoding server would climb above', async () => {
    for (const prefix of ['/v2/%2e%2e', '/v2/%2E.', '/v2/.%2e/x', '/v2/..;x', '/v2/.;', '/v2%2F..', '/v2%2f%2e%2e', '/v2%5C..', '/v2%00', '/v2//x', '/v2/%61']) {
      await refusedAt(withRoute({ match: { pathPrefix: '/api' }, rewrite: { prefix } }), 'services[0].routes[0].rewrite.prefix', /./)
    }
    // Dots inside a segment are no dot segment.
    for (const prefix of ['/v2/...', '/v2/a.b', '/v2/%C3%A1', '/v2/a%20b']) {
      await validateConfig(withRoute({ match: { pathPrefix: '/api' }, rewrite: { prefix } }), '.')
    }
  })

  it('refuses a rewrite prefix that is not a plain absolute path', async () => {
    for (const prefix of ['v2', '/v2?x=1', '/v2#f', '/v 2', '/v2/../admin', '/./x', '/%zz', `/${'a'.repeat(1024)}`, '/v2\r\nx: y']) {
      await refusedAt(withRoute({ match: { pathPrefix: '/api' }, rewrite: { prefix } }), 'services[0].routes[0].rewrite.prefix', /./)
    }
  })

  it('refuses a pathPrefix spelled otherwise than the normalised path requests are matched on', async () => {
    for (const pathPrefix of ['/%61pi', '/api%2dv2', '/x/../api', '/api/.', '/%2e%2e/api', '/api/./v2', '/api;v=1', '/api//v2', '//api', '/api%2fv2', '/api\\v2', '/api#x', '/x/..;/api']) {
      await refusedAt(withRoute({ match: { pathPrefix } }), 'services[0].routes[0].match.pathPrefix', /as the path it matches/)
    }
  })

  it('takes a hash key as header:<name> or client-address', async () => {
    for (const hashKey of ['header:', 'cookie:sid', 'client', 'header:bad name', '']) {
      await refusedAt(withRoute({ to: [{ service: 'api', weight: 1 }], hashKey }), 'services[0].routes[0].hashKey', /header:<name>/)
    }
  })

  it('bounds the number of routes of a service', async () => {
    const routes = Array.from({ length: 65 }, (_, i) => ({ match: { pathPrefix: `/r${i}` } }))
    await refusedAt({ services: [{ ...stable, routes }] }, 'services[0].routes', /./)
  })

  it('takes match.methods and match.headers on the old services[].match too', async () => {
    const c = await validateConfig({ services: [{ ...stable, match: { methods: ['GET'], headers: { 'x-a': { prefix: 'b' } } } }] }, '/')
    expect(c.services[0]!.match!.methods).to.deep.equal(['GET'])
    await refusedAt({ services: [{ ...stable, match: { headers: { 'x-a': { regex: '(?=a)' } } } }] }, 'services[0].match.headers.x-a.regex', /RE2/)
  })

  it('refuses a short regex that compiles to a large program, whose cost every request pays (attack, issue 25)', async () => {
    for (const regex of ['(?:[a-z]{1,30}){1,30}z', '[^z]*(?:a{1,999})z', '(?:a{1,200}){1,5}', '.{1,1000}z', '(?:(?:.?){0,250}){0,4}z']) {
      await refusedAt({ services: [{ ...stable, match: { headers: { 'x-a': { regex } } } }] }, 'services[0].match.headers.x-a.regex', /instructions, more than 200/)
    }
    for (const regex of ['[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '(.*a){20}', '20[0-9]{2}-(beta|rc)[0-9]*']) {
      const c = await validateConfig({ services: [{ ...stable, match: { headers: { 'x-a': { regex } } } }] }, '/')
      expect(c.services[0]!.match!.headers!['x-a']!.regex, regex).to.equal(regex)
    }
  })
})
