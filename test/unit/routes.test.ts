import { expect } from 'chai'
import { Router, hostName, routesOf, underPrefix } from '../../lib/http/routes.js'
import type { RouteRequest } from '../../lib/http/routes.js'
import { compileRegex, hashUnit, pickWeighted, regexProblem, rewritePath, routingPath } from '../../lib/route-rules.js'
import { seededRandom as seeded } from '../support/random.js'

function req(url: string, opts: { method?: string; host?: string; headers?: Record<string, string>; client?: string } = {}): RouteRequest {
  return { method: opts.method ?? 'GET', url, host: opts.host, remoteAddress: opts.client ?? '127.0.0.1', headers: opts.headers ?? {} }
}

describe('routing', () => {
  const router = new Router([
    { target: 'default' },
    { match: { pathPrefix: '/api' }, target: 'api' },
    { match: { pathPrefix: '/api/v2' }, target: 'api-v2' },
    { match: { host: 'API.example.test' }, target: 'host' },
    { match: { host: 'api.example.test', pathPrefix: '/api' }, target: 'host-api' },
  ])
  const route = (url: string, host?: string) => router.route(req(url, { host }))

  it('prefers host and the longest prefix', () => {
    expect(route('/api/x', 'api.example.test:8080')).to.equal('host-api')
    expect(route('/other', 'Api.Example.Test')).to.equal('host')
    expect(route('/api/v2/users?q=1', 'other')).to.equal('api-v2')
    expect(route('/api', 'other')).to.equal('api')
    expect(route('/apix')).to.equal('default')
  })

  it('returns null with no default and no match', () => {
    expect(new Router([{ match: { pathPrefix: '/a' }, target: 1 }]).route(req('/b'))).to.equal(null)
  })

  it('matches prefixes on a segment boundary', () => {
    expect(underPrefix('/api/x', '/api')).to.equal(true)
    expect(underPrefix('/apix', '/api')).to.equal(false)
    expect(underPrefix('/api/', '/api/')).to.equal(true)
    expect(underPrefix('/api', '/api/')).to.equal(false)
    expect(underPrefix('/anything', '/')).to.equal(true)
  })

  it('never takes an encoded slash for a segment boundary, and gives no route where reading it as one would change the route', () => {
    for (const url of ['/api%252Fx', '/api%5Cx']) expect(route(url), url).to.equal('default')
    // nginx and Go's decoded-path routers read /api%2Fx as /api/x: neither service is sure.
    for (const url of ['/api%2Fx', '/api%2fx', '/x/..%2F..%2Fapi', '/api\\x']) expect(route(url), url).to.equal(null)
    expect(route('/api/a%2Fb')).to.equal('api')
  })

  it('routes an encoded or dotted path where its decoded, resolved form goes (nginx and Envoy normalise before matching)', () => {
    // Every way of spelling a path under /api/v2 (escapes of unreserved characters in either
    // case, dot segments plain or encoded, climbing out of another prefix) reaches api-v2.
    const spell = (c: string) => [c, `%${c.charCodeAt(0).toString(16)}`, `%${c.charCodeAt(0).toString(16).toUpperCase()}`]
    const spellings = new Set<string>()
    for (const a of spell('a')) for (const v of spell('v')) spellings.add(`/${a}pi/${v}2/users`)
    for (const dot of ['.', '%2e', '%2E']) {
      spellings.add(`/other/${dot}${dot}/api/v2/users`)
      spellings.add(`/api/x/${dot}${dot}/v2/users`)
      spellings.add(`/api/${dot}/v2/users`)
      spellings.add(`/${dot}${dot}/${dot}${dot}/api/v2`)
    }
    for (const url of spellings) expect(route(url), url).to.equal('api-v2')
    // Climbing out of /api/v2 leaves it.
    expect(route('/api/v2/../x')).to.equal('api')
    expect(route('/api/v2/%2e%2e/%2e%2e/x')).to.equal('default')
    // Reserved and non-ASCII escapes stay escaped: not a boundary, not a letter.
    for (const url of ['/api%2Fv2', '/%2Fapi', '/api%3Fx', '/%C3%A1pi']) expect(route(url), url).to.not.equal('api-v2')
    expect(route('/api%2Fv2')).to.equal(null)
  })

  describe('spellings servers read differently (the path-confusion attack class)', () => {
    // How the servers behind a proxy read a request path before their own routing: each gives the
    // decoded path it routes on, or null for a 400. Written from their documented behaviour:
    // nginx (fragment cut, every escape decoded, merge_slashes), Tomcat (`;` parameters stripped
    // per segment, `#`, `\\`, NUL and %2F refused, slashes merged), Go (every escape decoded,
    // path.Clean), Node's WHATWG URL (`\\` is `/`, `//` an authority, dots resolved, no merge).
    const decodeAll = (p: string) => p.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
    const resolve = (p: string, merge: boolean) => {
      const segs = p.split('/').slice(1)
      const out: string[] = []
      segs.forEach((s, i) => {
        const last = i === segs.length - 1
        if (s === '..') out.pop()
        if (s === '.' || s === '..' || (merge && s === '' && !last)) {
          if (last) out.push('')
        } else out.push(s)
      })
      return `/${out.join('/')}`
    }
    const pathOf = (url: string) => url.split('?')[0]!
    const readings: Record<string, (url: string) => string | null> = {
      nginx: (url) => (/%00/.test(url) ? null : resolve(decodeAll(pathOf(url).split('#')[0]!), true)),
      tomcat: (url) => {
        const p = pathOf(url)
        if (/[#\\]|%00|%2f|%5c/i.test(p)) return null
        return resolve(decodeAll(p.split('/').map((s) => s.split(';')[0]).join('/')), true)
      },
      go: (url) => resolve(decodeAll(pathOf(url)), true),
      whatwg: (url) => decodeAll(new URL(url, 'http://h').pathname),
    }
    const prefixes = ['/admin', '/admin/x', '/pub', '/pub/admin', '/a.b']
    const r = new Router<string>([{ target: 'default' }, ...prefixes.map((p) => ({ match: { pathPrefix: p }, target: p }))])
    /** The route a server's reading of the path belongs to: the longest prefix it lies below. */
    const routeOf = (path: string) => prefixes.filter((p) => underPrefix(path, p)).sort((a, b) => b.length - a.length)[0] ?? 'default'
    const pieces = ['admin', 'pub', 'x', 'a.b', '', '.', '..', '%2e', '%2E%2e', '.%2e', '..;', '.;x', '%2e%2e;p', 'admin;p', 'pub;jsessionid=1', '%61dmin', 'adm%49n', 'p%75b', '%252e%252e', 'admin%2Fx', '..%2f', '%2F', '\\', '..\\admin', 'x#', '#/..', '%00', '%c0%ae%c0%ae', 'admin.', '...', 'a%3Fb', '%23', '%3B']
    const spellings: string[] = []
    for (const a of pieces) for (const b of pieces) for (const c of pieces) spellings.push(`/${a}/${b}/${c}`, `/${a}/${b}`)
    for (const a of pieces) spellings.push(`/${a}`, `//${a}`, `/${a}?x/../admin`, `/${a}//../admin`)

    it('sends every spelling where each server reading it would route it, or one of that route\'s parents, or nowhere', () => {
      let routed = 0
      for (const url of spellings) {
        const got = r.route(req(url))
        if (got === null) continue
        routed++
        for (const [name, read] of Object.entries(readings)) {
          const path = read(url)
          if (path === null) continue
          const theirs = routeOf(path)
          // Their route is ours, or one ours lies below (the default route lies below nothing).
          const fine = theirs === got || theirs === 'default' || (got !== 'default' && underPrefix(got, theirs))
          expect(fine, `${url}: routed to ${got}, ${name} reads ${path} (${theirs})`).to.equal(true)
        }
      }
      // Not proved by refusing everything: of these mostly hostile spellings, over a third have a route.
      expect(routed).to.be.greaterThan(spellings.length / 3)
    })

    it('routes the plain spellings of every class as their decoded, resolved form', () => {
      const cases: [string, string][] = [
        ['/admin;jsessionid=1/y', '/admin'],
        ['/pub;p/admin/z', '/pub/admin'],
        ['/pub//admin', '/pub/admin'],
        ['/pub/x/%2E%2E/admin', '/pub/admin'],
        ['/pub/%2e%2e%3B/admin', '/pub'],
        ['/pub/%252e%252e/admin', '/pub'],
        ['/%C0%AE%C0%AE/admin', 'default'],
        ['/admin.', 'default'],
        ['/pub/a%2Fb', '/pub'],
      ]
      for (const [url, want] of cases) expect(r.route(req(url)), url).to.equal(want)
      for (const url of ['/pub/..;/admin', '/pub/%2e%2e;x/admin', '/pub/.;/admin', '//admin', '/pub#/../admin', '/admin#x', '/pub\\..\\admin', '/admin%00', '/pub;%00/x', '/pub//../admin', '/admin%2F', '/pub/..%2Fadmin']) {
        expect(r.match(req(url)), url).to.equal(null)
      }
    })

    it('keeps a rewritten target in origin form and below the replacement, however the path is spelled', () => {
      const rw = new Router<string>([{ match: { pathPrefix: '/pub' }, rewrite: { prefix: '/v2' }, target: 'pub' }])
      for (const url of spellings) {
        const route = rw.match(req(url))
        if (route === null) continue
        const out = route.rewrite(url)
        expect(out.startsWith('/') && !out.startsWith('//'), `${url} -> ${out}`).to.equal(true)
        for (const [name, read] of Object.entries(readings)) {
          const path = read(out)
          if (path !== null) expect(underPrefix(path, '/v2'), `${url} -> ${out}: ${name} reads ${path}`).to.equal(true)
        }
      }
    })

    it('costs time linear in the path: a megabyte of escapes, segments or dots', () => {
      // Counted in work, not time: each form's normalised length follows its input's.
      for (const n of [1000, 100_000]) {
        expect(routingPath('/' + '%61'.repeat(n))).to.equal('/' + 'a'.repeat(n))
        expect(routingPath('/' + '%2f'.repeat(n))).to.equal('/' + '%2F'.repeat(n))
        expect(routingPath('/' + 'a/../'.repeat(n) + 'b')).to.equal('/b')
        expect(routingPath('/' + 'a;p/'.repeat(n))).to.equal('/' + 'a/'.repeat(n))
      }
    })

    it('returns a plain path itself', () => {
      for (const p of ['/', '/api/v2/users', '/a.b/c..d/e.', '/~x-y_z', '']) expect(routingPath(p)).to.equal(p)
    })
  })

  it('rewrites the path it matched, not the spelling it came in', () => {
    const r = new Router([{ match: { pathPrefix: '/api' }, rewrite: { prefix: '/v2' }, target: 'api' }])
    const match = (url: string) => r.match(req(url))!.rewrite(url)
    expect(match('/%61pi/x?q=%61')).to.equal('/v2/x?q=%61')
    expect(match('/other/../api/x')).to.equal('/v2/x')
    expect(match('/api/a%2Fb')).to.equal('/v2/a%2Fb')
    // Without a rewrite the instance gets the target as the client wrote it.
    const plain = new Router([{ match: { pathPrefix: '/api' }, target: 'api' }])
    expect(plain.match(req('/%61pi/x'))!.rewrite('/%61pi/x')).to.equal('/%61pi/x')
  })

  it('reads the Host header name without its port', () => {
    expect(hostName('[::1]:80')).to.equal('::1')
    expect(hostName('Example.COM.:443')).to.equal('example.com')
  })

  describe('precedence', () => {
    it('goes host, then the longest prefix, then the route with more method and header rules, then file order', () => {
      const r = new Router<string>([
        { match: { pathPrefix: '/a' }, target: 'prefix' },
        { match: { pathPrefix: '/a', methods: ['GET'] }, target: 'prefix+method' },
        { match: { pathPrefix: '/a', methods: ['GET'], headers: { 'x-c': { exact: '1' } } }, target: 'prefix+method+header' },
        { match: { pathPrefix: '/a', headers: { 'x-d': { exact: '1' } } }, target: 'prefix+header (same rules, later)' },
        { match: { headers: { 'x-c': { exact: '1' } } }, target: 'header only' },
        { match: { host: 'h' }, target: 'host' },
        { target: 'default' },
      ])
      expect(r.route(req('/a/b', { headers: { 'x-c': '1' } }))).to.equal('prefix+method+header')
      expect(r.route(req('/a/b', { headers: { 'x-c': '1' }, host: 'h' }))).to.equal('host')
      expect(r.route(req('/a/b'))).to.equal('prefix+method')
      expect(r.route(req('/a/b', { method: 'POST' }))).to.equal('prefix')
      expect(r.route(req('/a/b', { method: 'POST', headers: { 'x-d': '1' } }))).to.equal('prefix+header (same rules, later)')
      expect(r.route(req('/z', { headers: { 'x-c': '1' } }))).to.equal('header only')
      expect(r.route(req('/z'))).to.equal('default')
    })

    it('tries pathPrefix / before any route without a prefix, header rules or not', () => {
      const r = new Router<string>([{ match: { headers: { 'x-c': { exact: '1' } } }, target: 'header only' }, { match: { pathPrefix: '/' }, target: 'slash' }])
      expect(r.route(req('/x', { headers: { 'x-c': '1' } }))).to.equal('slash')
    })

    it('keeps file order among routes equally specific, whatever order they are listed in', () => {
      for (const order of [
        ['first', 'second'],
        ['second', 'first'],
      ]) {
        const r = new Router(order.map((t) => ({ match: { pathPrefix: '/p', methods: t === 'first' ? ['GET'] : ['GET', 'HEAD'] }, target: t })))
        expect(r.route(req('/p'))).to.equal(order[0])
      }
    })
  })

  describe('header rules', () => {
    const r = new Router<string>([
      { match: { headers: { 'x-canary': { exact: 'yes' } } }, target: 'exact' },
      { match: { headers: { 'x-user': { prefix: 'beta-' } } }, target: 'prefix' },
      { match: { headers: { 'x-ver': { regex: 'v[0-9]+\\.(1|2)' } } }, target: 'regex' },
      { target: 'default' },
    ])
    const by = (headers: Record<string, string>) => r.route(req('/', { headers }))

    it('matches an exact value, and nothing else', () => {
      expect(by({ 'x-canary': 'yes' })).to.equal('exact')
      for (const v of ['Yes', 'yes ', 'yess', '', 'yes, yes']) expect(by({ 'x-canary': v }), v).to.equal('default')
    })

    it('matches a prefix', () => {
      for (const v of ['beta-', 'beta-1', 'beta-x-y']) expect(by({ 'x-user': v }), v).to.equal('prefix')
      for (const v of ['beta', 'Beta-1', 'xbeta-1']) expect(by({ 'x-user': v }), v).to.equal('default')
    })

    it('matches a regex against the whole value', () => {
      for (const v of ['v1.1', 'v22.2']) expect(by({ 'x-ver': v }), v).to.equal('regex')
      for (const v of ['v1.3', 'xv1.1', 'v1.1x', 'v.1', 'v1x1']) expect(by({ 'x-ver': v }), v).to.equal('default')
    })

    it('does not match a header that is absent', () => {
      expect(by({})).to.equal('default')
    })

    it('needs every rule of a route to hold', () => {
      const both = new Router<string>([{ match: { headers: { a: { exact: '1' }, b: { exact: '2' } } }, target: 'both' }, { target: 'default' }])
      expect(both.route(req('/', { headers: { a: '1', b: '2' } }))).to.equal('both')
      expect(both.route(req('/', { headers: { a: '1' } }))).to.equal('default')
      expect(both.route(req('/', { headers: { b: '2' } }))).to.equal('default')
    })

    it('compares header names without case', () => {
      const upper = new Router<string>([{ match: { headers: { 'X-Canary': { exact: '1' } } }, target: 'c' }])
      expect(upper.route(req('/', { headers: { 'x-canary': '1' } }))).to.equal('c')
    })
  })

  it('matches methods exactly', () => {
    const r = new Router<string>([{ match: { methods: ['GET', 'HEAD'] }, target: 'read' }, { target: 'default' }])
    for (const m of ['GET', 'HEAD']) expect(r.route(req('/', { method: m })), m).to.equal('read')
    for (const m of ['POST', 'get', 'PUT', 'GETX']) expect(r.route(req('/', { method: m })), m).to.equal('default')
  })

  describe('regex attack class', () => {
    it('refuses backtracking constructs and over-long patterns', () => {
      for (const p of ['(a)\\1', '(?=a)a', '(?!a)b', '(?<=a)b', 'a{1001}', '((a{100}){100}){100}', 'x'.repeat(257), '[']) {
        expect(regexProblem(p), p).to.be.a('string')
      }
      expect(regexProblem('(a+)+$')).to.equal(null)
    })

    it('matches catastrophic-backtracking patterns against long values in one pass', () => {
      // A backtracking engine needs about 2^n steps for each of these on n characters; with n in
      // the tens of thousands this test would never end. RE2 answers in one linear pass.
      const cases: [string, string][] = [
        ['(a+)+', `${'a'.repeat(50_000)}!`],
        ['(a|a)*b', 'a'.repeat(50_000)],
        ['(.*a){12}', 'a'.repeat(20_000)],
        ['(x+x+)+y', 'x'.repeat(50_000)],
      ]
      for (const [p, v] of cases) {
        const test = compileRegex(p)
        expect(typeof test(v), p).to.equal('boolean')
        const r = new Router<string>([{ match: { headers: { 'x-h': { regex: p } } }, target: 'r' }, { target: 'default' }])
        expect(['r', 'default'], p).to.include(r.route(req('/', { headers: { 'x-h': v } })))
      }
    })
  })

  describe('rewrite', () => {
    const strip = { stripPrefix: true }
    const cases: [string, string, { stripPrefix?: boolean; prefix?: string }, string][] = [
      ['/api/x', '/api', strip, '/x'],
      ['/api', '/api', strip, '/'],
      ['/api/', '/api', strip, '/'],
      ['/api?q=1', '/api', strip, '/?q=1'],
      ['/api/x/y?q=/api/z&r', '/api', strip, '/x/y?q=/api/z&r'],
      ['/api/x', '/api/', strip, '/x'],
      ['/api/', '/api/', strip, '/'],
      ['/api/a%2Fb', '/api', strip, '/a%2Fb'],
      ['/api//x', '/api', strip, '/x'],
      ['/api/x', '/', strip, '/api/x'],
      ['/api/x', '/api', { prefix: '/v2' }, '/v2/x'],
      ['/api', '/api', { prefix: '/v2' }, '/v2'],
      ['/api/x', '/api', { prefix: '/v2/' }, '/v2/x'],
      ['/api/x', '/api/', { prefix: '/v2' }, '/v2/x'],
      ['/api/x?y=1', '/api', { prefix: '/v2' }, '/v2/x?y=1'],
      ['/api/x', '/api', { prefix: '/' }, '/x'],
      ['/x', '/', { prefix: '/v2' }, '/v2/x'],
    ]
    for (const [url, prefix, rewrite, want] of cases) {
      it(`${url} under ${prefix} with ${JSON.stringify(rewrite)} -> ${want}`, () => {
        expect(rewritePath(url, prefix, rewrite)).to.equal(want)
      })
    }

    it('gives an origin-form target for every path under the prefix', () => {
      const tails = ['', '/', '//', '/a', '//a', '/a%2F', '?', '?a=/b', '/?x', '/%2F%2F', '/a/../b']
      for (const prefix of ['/', '/api', '/api/']) {
        for (const tail of tails) {
          const url = (prefix === '/' ? '' : prefix.replace(/\/$/, '')) + tail
          if (url === '' || url.startsWith('?')) continue
          for (const rewrite of [{ stripPrefix: true }, { prefix: '/v2' }, { prefix: '/v2/' }, { prefix: '/' }]) {
            const out = rewritePath(url, prefix, rewrite)
            expect(out, `${url} ${JSON.stringify(rewrite)}`).to.match(/^\/(?!\/)/)
            expect(out.slice(out.indexOf('?') === -1 ? out.length : out.indexOf('?')), url).to.equal(url.includes('?') ? url.slice(url.indexOf('?')) : '')
          }
        }
      }
    })

    it('never lets a dot segment climb out of the replacement (attack: issue 25 routing)', () => {
      const dots = ['..', '.', '%2e%2e', '%2E.', '.%2e', '%2e']
      for (const prefix of ['/api', '/api/', '/']) {
        for (const rewrite of [{ prefix: '/v2' }, { prefix: '/v2/' }, { prefix: '/a/b' }]) {
          const base = rewrite.prefix.replace(/\/$/, '')
          for (const d of dots) {
            for (const tail of [`/${d}`, `/${d}/`, `/${d}/admin`, `/${d}/${d}/${d}/admin?x=/../y`, `/x/${d}/${d}/admin`, `//${d}//admin`]) {
              const url = (prefix === '/' ? '' : prefix.replace(/\/$/, '')) + tail
              const out = rewritePath(url, prefix, rewrite)
              const p = out.split('?')[0]!
              // What the instance resolves: decode %2e, then remove dot segments (RFC 3986 5.2.4).
              const resolved = new URL(p.replace(/%2e/gi, '.'), 'http://instance').pathname
              expect(resolved === base || resolved.startsWith(`${base}/`), `${url} ${JSON.stringify(rewrite)} -> ${out} (${resolved})`).to.equal(true)
              expect(out, url).to.match(/^\/(?!\/)/)
            }
          }
        }
      }
      expect(rewritePath('/api/a/../b', '/api', { prefix: '/v2' })).to.equal('/v2/b')
      expect(rewritePath('/api/..', '/api', { stripPrefix: true })).to.equal('/')
      expect(rewritePath('/api/a/..b/c', '/api', { prefix: '/v2' })).to.equal('/v2/a/..b/c')
    })

    it('applies only on the route that rewrites', () => {
      const r = new Router<string>([{ match: { pathPrefix: '/api' }, rewrite: { stripPrefix: true }, target: 'api' }, { target: 'default' }])
      expect(r.match(req('/api/x'))!.rewrite('/api/x')).to.equal('/x')
      expect(r.match(req('/apix'))!.rewrite('/apix')).to.equal('/apix')
    })
  })

  describe('weighted split', () => {
    const targets = [
      { target: 'stable', weight: 90 },
      { target: 'canary', weight: 10 },
    ]

    it('never picks a target of weight 0, and covers the range by weight', () => {
      const w = [
        { target: 'a', weight: 0 },
        { target: 'b', weight: 3 },
        { target: 'c', weight: 0 },
        { target: 'd', weight: 1 },
      ]
      const got = [0, 0.25, 0.5, 0.74, 0.75, 0.99, 0.999999].map((u) => pickWeighted(w, 4, u))
      expect(got).to.deep.equal(['b', 'b', 'b', 'b', 'd', 'd', 'd'])
      expect(pickWeighted(w, 4, 1)).to.equal('d')
    })

    it('draws a split per request without a hash key, within binomial bounds', () => {
      const r = new Router([{ to: targets }], seeded(7))
      const n = 20_000
      let canary = 0
      for (let i = 0; i < n; i++) if (r.route(req('/')) === 'canary') canary++
      // mean 2000, sd = sqrt(n p (1-p)) ~ 42: six standard deviations either side.
      expect(canary).to.be.within(2000 - 255, 2000 + 255)
    })

    it('gives one key the same service every time, and keys spread by weight', () => {
      const r = new Router([{ to: targets, hashKey: { header: 'x-user' } }], seeded(1))
      const n = 20_000
      let canary = 0
      for (let i = 0; i < n; i++) {
        const first = r.route(req('/', { headers: { 'x-user': `user-${i}` } }))
        if (first === 'canary') canary++
        if (i % 100 === 0) for (let k = 0; k < 5; k++) expect(r.route(req('/', { headers: { 'x-user': `user-${i}` } }))).to.equal(first)
      }
      expect(canary).to.be.within(2000 - 255, 2000 + 255)
      for (const u of [0, 0.5, 0.999]) expect(hashUnit(`k${u}`)).to.be.within(0, 1 - Number.EPSILON)
    })

    it('keys a split by the client address when asked', () => {
      const r = new Router([{ to: targets, hashKey: { clientAddress: true } }], () => 0.999)
      for (let i = 0; i < 50; i++) {
        const client = `10.0.${i}.1`
        const first = r.route(req('/', { client }))
        expect(r.route(req('/x', { client }))).to.equal(first)
      }
    })

    it('draws per request when the hash key header is absent', () => {
      let next = 0
      const r = new Router([{ to: targets, hashKey: { header: 'x-user' } }], () => next)
      next = 0.95
      expect(r.route(req('/'))).to.equal('canary')
      next = 0.1
      expect(r.route(req('/'))).to.equal('stable')
    })
  })

  describe('routes of services', () => {
    const byName = (name: string) => (['api', 'canary', 'web', 'split'].includes(name) ? name : undefined)

    it('turns match into a route to the service, a service without match or routes into the default, and routes: [] into none', () => {
      const r = new Router(
        routesOf(
          [
            { name: 'api', match: { pathPrefix: '/api' } },
            { name: 'canary', routes: [] },
            { name: 'web' },
            { name: 'split', routes: [{ match: { pathPrefix: '/s' }, to: [{ service: 'canary', weight: 1 }], hashKey: 'client-address' }] },
          ],
          byName,
        ),
      )
      expect(r.route(req('/api'))).to.equal('api')
      expect(r.route(req('/s'))).to.equal('canary')
      expect(r.route(req('/other'))).to.equal('web')
    })

    it('refuses a name it does not know', () => {
      expect(() => routesOf([{ name: 'api', routes: [{ to: [{ service: 'b', weight: 1 }] }] }], byName)).to.throw(/unknown service "b"/)
    })
  })
})
