// The families of cases.

import { Buffer } from 'node:buffer'
import type { Rng } from '../fuzz-wire.js'
import type { Case } from './case.js'
import { answered, tick } from './case.js'
import { BOUND_MS, EMPTY, HEADER_COUNT_LIMIT, HEAD_LIMIT, LARGE } from './options.js'
import { MARKER, bytesOf, endsConnection, handMade, outcomeOf } from './requests.js'
import type { ReqSpec } from './requests.js'
import { describeCase } from './run-state.js'
import { KINDS } from './upstreams.js'


/** Valid requests one after another on a keep-alive connection. */
async function sequential(c: Case, bodies: 'maybe' | 'always'): Promise<void> {
  const n = c.rng.int(1, Math.min(bodies === 'always' ? 2 : 4, c.max))
  const w = c.open()
  const specs: ReqSpec[] = []
  for (let i = 0; i < n; i++) {
    const spec = c.request({ body: bodies, last: i === n - 1 })
    specs.push(spec)
    w.reader.expect(spec.method === 'HEAD')
    await c.send(w, bytesOf(spec))
    await w.until(answered(w, i))
    const a = w.reader.answers[i]
    c.judge(spec, a, w, specs)
    if (endsConnection(spec, a)) break
  }
  await c.finish(w, specs, true)
}

/** 2-5 valid requests in one go (or a few pieces); the answers must come in their order. */
async function pipeline(c: Case): Promise<void> {
  const n = c.rng.int(Math.min(2, c.max), Math.min(5, c.max))
  const specs: ReqSpec[] = []
  for (let i = 0; i < n; i++) specs.push(c.request({ maxBody: c.rng.chance(0.8) ? 4096 : 20_000, last: i === n - 1 }))
  const halfClose = c.rng.chance(0.25)
  c.rec.note = halfClose ? 'then half-close' : ''
  const w = c.open()
  for (const s of specs) w.reader.expect(s.method === 'HEAD')
  await c.send(w, Buffer.concat(specs.map(bytesOf)), 4)
  if (halfClose) w.end()
  await w.until(answered(w, n - 1))
  let ended = false
  for (let i = 0; i < n; i++) {
    const a = w.reader.answers[i]
    // After an answer that ends the connection the rest are not answered, rightly.
    c.judge(specs[i]!, a, w, specs, ended ? 'dropped' : halfClose && !w.timedOut && w.reader.malformed === null ? 'closed-after-client-end' : undefined)
    ended ||= endsConnection(specs[i]!, a)
  }
  await c.finish(w, specs, true)
}

/** A body sent after `Expect: 100-continue` got its 100 (or right away, as clients may). */
async function expectContinue(c: Case): Promise<void> {
  const spec = c.request({ body: 'always', minBody: 1, expectContinue: true, version: '1.1' })
  const w = c.open()
  w.reader.expect(false)
  w.write(spec.head)
  if (c.rng.chance(0.85)) {
    // No deadline of its own: on a busy machine a 100 takes a while, and a proxy that never sends
    // one is caught by the bound.
    const got = await w.until(() => w.reader.interim > 0 || w.reader.answers.length > 0)
    c.tally(w.reader.interim > 0 ? '100-continue' : 'no-100')
    if (!got && !w.closed) c.unexpected(`no 100 Continue (nor an answer) within ${BOUND_MS} ms`, `id ${spec.id}`)
  }
  if (w.reader.answers.length === 0) await c.send(w, spec.body)
  await w.until(answered(w, 0))
  c.judge(spec, w.reader.answers[0], w, [spec])
  await c.finish(w, [spec], true)
}

const GARBAGE = [
  ['random-bytes', 10],
  ['random-text', 6],
  ['bad-method', 4],
  ['bad-version', 4],
  ['absolute-form', 3],
  ['asterisk', 2],
  ['connect', 2],
  ['cl-and-te', 4],
  ['te-not-chunked', 3],
  ['dup-cl', 3],
  ['bad-cl', 4],
  ['obs-fold', 2],
  ['space-before-colon', 2],
  ['ctl-in-value', 3],
  ['bad-chunk-size', 3],
  ['chunk-overflow', 2],
  ['bad-header-name', 2],
  ['leading-crlf', 2],
  ['no-host', 2],
  ['two-hosts', 2],
  ['nul-in-target', 2],
  ['http09', 1],
  ['huge-cl', 2],
  ['lf-in-chunk', 2],
] as const

/**
 * The variants the proxy must refuse (docs/http.md, "What the proxy refuses"): an upstream's answer
 * to one means it forwarded what it should not have. The rest may be taken (absolute form, a
 * leading CRLF, OPTIONS *) or are random bytes that are rarely a request at all.
 */
const REFUSED: ReadonlySet<string> = new Set([
  'bad-method',
  'bad-version',
  'connect',
  'cl-and-te',
  'te-not-chunked',
  'dup-cl',
  'bad-cl',
  'obs-fold',
  'space-before-colon',
  'ctl-in-value',
  'bad-chunk-size',
  'chunk-overflow',
  'bad-header-name',
  'no-host',
  'two-hosts',
  'nul-in-target',
  'http09',
  'huge-cl',
  'lf-in-chunk',
])

/** Requests no parser should take as they are, or that only a lenient one would; smuggling tries. */
function garbageBytes(c: Case, variant: string, id: string): Buffer {
  const rng = c.rng
  const nid = c.run.newId()
  c.run.nested.add(nid)
  const nested = `GET /r/${nid}/plain HTTP/1.1\r\nHost: fuzz\r\n\r\n`
  const target = `/r/${id}/plain`
  const post = (headers: string, body: string) => `POST ${target} HTTP/1.1\r\nHost: fuzz\r\n${headers}\r\n${body}`
  switch (variant) {
    case 'random-bytes':
      return rng.bytes(rng.int(1, 600))
    case 'random-text': {
      let s = ''
      for (let i = rng.int(1, 400); i > 0; i--) s += rng.chance(0.08) ? rng.pick(['\r\n', '\n', '\r', ': ', ' ']) : rng.text(1)
      return Buffer.from(s, 'latin1')
    }
    case 'bad-method':
      return Buffer.from(`${rng.text(rng.int(1, 12))} ${target} HTTP/1.1\r\nHost: fuzz\r\n\r\n`, 'latin1')
    case 'bad-version':
      return Buffer.from(`GET ${target} ${rng.pick(['HTTP/2.0', 'HTTP/1.2', 'HTTP/0.9', 'HTTP/1', 'http/1.1', 'HTTP/1.1x', 'HTTP/11.1'])}\r\nHost: fuzz\r\n\r\n`, 'latin1')
    case 'absolute-form':
      return Buffer.from(`GET http://fuzz${target} HTTP/1.1\r\nHost: fuzz\r\n\r\n`, 'latin1')
    case 'asterisk':
      return Buffer.from('OPTIONS * HTTP/1.1\r\nHost: fuzz\r\n\r\n', 'latin1')
    case 'connect':
      return Buffer.from('CONNECT fuzz:443 HTTP/1.1\r\nHost: fuzz:443\r\n\r\n', 'latin1')
    case 'cl-and-te': {
      const body = `0\r\n\r\n${nested}`
      const cl = `Content-Length: ${rng.chance(0.5) ? body.length : 5}\r\n`
      const te = 'Transfer-Encoding: chunked\r\n'
      return Buffer.from(post(rng.chance(0.5) ? cl + te : te + cl, body), 'latin1')
    }
    case 'te-not-chunked': {
      const te = rng.pick(['gzip', 'chunked, gzip', 'identity', 'chunked, chunked', 'xchunked', 'chunked;q=1'])
      return Buffer.from(post(`Transfer-Encoding: ${te}\r\n${rng.chance(0.5) ? 'Content-Length: 5\r\n' : ''}`, `5\r\nhello\r\n0\r\n\r\n${nested}`), 'latin1')
    }
    case 'dup-cl':
      return Buffer.from(post(`Content-Length: 5\r\nContent-Length: ${5 + nested.length}\r\n`, `hello${nested}`), 'latin1')
    case 'bad-cl':
      return Buffer.from(post(`Content-Length: ${rng.pick(['+5', '-1', '5 5', '0x5', '5,6', '', '5.0', '1e1', '05a'])}\r\n`, `hello${nested}`), 'latin1')
    case 'obs-fold':
      return Buffer.from(`GET ${target} HTTP/1.1\r\nHost: fuzz\r\nX-Fold: a\r\n ${rng.pick(['b', 'Content-Length: 5', 'x'])}\r\n\r\n`, 'latin1')
    case 'space-before-colon':
      return Buffer.from(`GET ${target} HTTP/1.1\r\nHost : fuzz\r\n${rng.pick(['Content-Length : 5\r\n', 'Transfer-Encoding : chunked\r\n', ''])}\r\nhello`, 'latin1')
    case 'ctl-in-value':
      return Buffer.from(`GET ${target} HTTP/1.1\r\nHost: fuzz\r\nX-Ctl: a${String.fromCharCode(rng.pick([0, 1, 8, 0x0b, 0x0c, 0x7f, 0x0d]))}b\r\n\r\n`, 'latin1')
    case 'bad-chunk-size':
      return Buffer.from(post('Transfer-Encoding: chunked\r\n', `${rng.pick(['zz', '-1', ' 5', '5 ', '0x5', ''])}\r\nhello\r\n0\r\n\r\n`), 'latin1')
    case 'chunk-overflow':
      return Buffer.from(post('Transfer-Encoding: chunked\r\n', `${rng.pick(['ffffffffffffffffffff', '10000000000000000', '7fffffffffffffff'])}\r\nhello\r\n`), 'latin1')
    case 'bad-header-name':
      return Buffer.from(`GET ${target} HTTP/1.1\r\nHost: fuzz\r\n${rng.pick(['X(A): b', 'X A: b', ': novalue', 'X-\u00e9: b', '\tX: b'])}\r\n\r\n`, 'latin1')
    case 'leading-crlf':
      return Buffer.from(`${rng.pick(['\r\n', '\r\n\r\n', '\n'])}GET ${target} HTTP/1.1\r\nHost: fuzz\r\n\r\n`, 'latin1')
    case 'no-host':
      return Buffer.from(`GET ${target} HTTP/1.1\r\n\r\n`, 'latin1')
    case 'two-hosts':
      return Buffer.from(`GET ${target} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`, 'latin1')
    case 'nul-in-target':
      return Buffer.from(`GET /r/${id}/pl${rng.pick(['\0', '\x7f', ' ', '\t', '#'])}ain HTTP/1.1\r\nHost: fuzz\r\n\r\n`, 'latin1')
    case 'http09':
      return Buffer.from(`GET ${target}\r\n\r\n`, 'latin1')
    case 'huge-cl':
      return Buffer.from(post(`Content-Length: ${rng.pick(['99999999999999999999', '18446744073709551616', '9007199254740993'])}\r\n`, 'hello'), 'latin1')
    default:
      return Buffer.from(post('Transfer-Encoding: chunked\r\n', `5\nhello\n0\n\n${nested}`), 'latin1')
  }
}

/** Malformed requests and smuggling attempts; the client then half-closes, leaves, or waits. */
async function garbage(c: Case): Promise<void> {
  const rng = c.rng
  const variant = rng.weighted(GARBAGE)
  const id = c.newId()
  c.sent++
  c.rec.note = variant
  const bytes = garbageBytes(c, variant, id)
  const w = c.open()
  w.reader.expect(false)
  await c.send(w, bytes)
  // Waiting is for requests the proxy must refuse at once: random bytes may be a request's start,
  // and a huge (but legal) length or chunk size is rightly waited for.
  const partial = variant === 'random-bytes' || variant === 'random-text' || variant === 'chunk-overflow' || variant === 'huge-cl'
  const how = rng.weighted([['end', 75], ['destroy', 10], ['wait', 15]] as const)
  if (how === 'destroy') {
    await tick()
    w.destroy(rng.chance(0.5))
    c.tally('left')
    return
  }
  // Waiting for a request that may be incomplete would only wait for the bound.
  if (how === 'end' || partial) w.end()
  const closed = await w.untilClosed()
  const spec = handMade(id, 'GET', variant)
  const answers = w.reader.answers
  const outcome = c.judge(spec, answers[0], w, [spec])
  // The proxy took it for a request and the upstream never answered: do they frame it differently?
  if (outcome === '504' || outcome === 'malformed') c.unexpected(`${variant} -> ${outcome}`, `${describeCase(c.rec, true)}`)
  const forwarded = answers.find((a) => a.headers.get('x-id') !== undefined)
  // A `#` in a target starts a fragment, which llhttp (and node:http) take: only the other bytes must be refused.
  const fragment = variant === 'nul-in-target' && bytes.includes('#')
  if (REFUSED.has(variant) && !fragment && forwarded !== undefined) c.unexpected(`${variant}: forwarded, answered ${forwarded.status} by an upstream`, describeCase(c.rec, true))
  for (let i = 1; i < answers.length; i++) {
    c.checkLeak(spec, answers[i]!, [spec])
    c.tally('extra-answer')
  }
  // Waiting, a request that was valid after all (leading CRLF) is answered and kept alive, rightly.
  const last = answers[answers.length - 1]
  const kept = how === 'wait' && !partial && last?.complete === true && !/close/i.test(last.headers.get('connection') ?? '')
  if (!closed && !kept) c.unexpected(`${variant}: the connection stayed open (${how === 'end' || partial ? 'after the client half-closed' : 'waiting'})`, w.written().slice(0, 200))
}

/** Valid requests with bare LF line ends (everywhere, only the blank line, or some lines). */
async function bareLf(c: Case): Promise<void> {
  const eol = c.rng.weighted([['lf', 50], ['last-lf', 25], ['mixed', 25]] as const)
  const spec = c.request({ eol, maxBody: 8192 })
  c.rec.note = eol
  const w = c.open()
  w.reader.expect(spec.method === 'HEAD')
  await c.send(w, bytesOf(spec))
  if (c.rng.chance(0.5)) w.end()
  await w.until(answered(w, 0))
  c.judge(spec, w.reader.answers[0], w, [spec])
  if (w.timedOut) c.unexpected(`${eol}: no answer and no close within ${BOUND_MS} ms`, `id ${spec.id}`)
  await c.finish(w, [spec], false)
}

/** Heads near and past the proxy's 16 KiB limit: one long header, many headers, a long target. */
async function longHeaders(c: Case): Promise<void> {
  const rng = c.rng
  const variant = rng.weighted([['one-big', 40], ['many', 40], ['long-target', 20]] as const)
  const size = rng.int(8_000, 24_000)
  const extra: [string, string][] = []
  let query = ''
  if (variant === 'one-big') extra.push(['X-Big', rng.text(size)])
  else if (variant === 'many') for (let i = rng.int(60, 140); i > 0; i--) extra.push([`X-H${i}`, rng.text(rng.int(10, 200))])
  else query = `?${rng.text(size).replace(/[#%?\\]/g, 'a')}`
  const made = c.request({ kinds: [['plain', 1]], body: 'never', extraHeaders: extra, query })
  const fields = made.head.toString('latin1').split('\r\n').length - 3
  c.rec.note = `${variant}: ${made.head.length} bytes, ${fields} fields`
  // Near the byte limit llhttp's count (names, values, target) and ours (the raw head) differ a little.
  const ok =
    fields > HEADER_COUNT_LIMIT || made.head.length > HEAD_LIMIT + 600 ? ['431'] : made.head.length < HEAD_LIMIT - 600 ? ['200'] : ['200', '431']
  const spec: ReqSpec = { ...made, ok }
  const w = c.open()
  w.reader.expect(spec.method === 'HEAD')
  await c.send(w, bytesOf(spec))
  await w.until(answered(w, 0))
  c.judge(spec, w.reader.answers[0], w, [spec])
  await c.finish(w, [spec], true)
}

const SPECIAL = [0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x00, 0x7f, 0xff, 0x2c, 0x3b, 0x22, 0x2f, 0x30, 0x39, 0x2d, 0x2b]

/** Random edits, mostly in the head: replace, delete, insert a byte, or repeat a line. */
function mutate(rng: Rng, bytes: Buffer, headLength: number): Buffer {
  let b = Buffer.from(bytes)
  for (let n = rng.weighted([[1, 60], [2, 25], [3, 10], [8, 5]] as const); n > 0 && b.length > 0; n--) {
    const at = rng.chance(0.85) ? rng.int(0, Math.min(headLength, b.length) - 1) : rng.int(0, b.length - 1)
    switch (rng.weighted([['random', 35], ['special', 30], ['delete', 15], ['insert', 15], ['repeat-line', 5]] as const)) {
      case 'random':
        b[at] = rng.int(0, 255)
        break
      case 'special':
        b[at] = rng.pick(SPECIAL)
        break
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)])
        break
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), Buffer.from([rng.chance(0.5) ? rng.pick(SPECIAL) : rng.int(0, 255)]), b.subarray(at)])
        break
      case 'repeat-line': {
        const start = b.lastIndexOf('\n', at) + 1
        const end = b.indexOf('\n', at)
        if (end > start) b = Buffer.concat([b.subarray(0, end + 1), b.subarray(start, end + 1), b.subarray(end + 1)])
        break
      }
    }
  }
  return b
}

/** A valid request with random edits, maybe behind a valid one on the same connection. */
async function mutated(c: Case): Promise<void> {
  const rng = c.rng
  const before = c.max >= 2 && rng.chance(0.3) ? c.request({ maxBody: 4096 }) : null
  const base = c.request({ maxBody: 8192 })
  const bytes = mutate(rng, bytesOf(base), base.head.length)
  const method = bytes.toString('latin1', 0, Math.min(bytes.length, 16)).split(' ')[0] ?? ''
  const spec: ReqSpec = { ...base, mutated: true, valid: false }
  const specs = before === null ? [spec] : [before, spec]
  const w = c.open()
  for (const s of specs) w.reader.expect((s === spec ? method : s.method) === 'HEAD')
  await c.send(w, before === null ? bytes : Buffer.concat([bytesOf(before), bytes]))
  // An edit can make the proxy wait for more (a longer Content-Length): the half-close ends that.
  if (rng.chance(0.85)) w.end()
  await w.until(answered(w, specs.length - 1))
  for (let i = 0; i < specs.length; i++) {
    const outcome = c.judge(specs[i]!, w.reader.answers[i], w, specs)
    if (specs[i] === spec && (outcome === '504' || outcome === 'malformed')) c.unexpected(`mutated request -> ${outcome}`, describeCase(c.rec, true))
  }
  w.destroy()
  await w.untilClosed()
  const answers = w.reader.answers
  for (let i = specs.length; i < answers.length; i++) {
    c.checkLeak(spec, answers[i]!, specs)
    c.tally('extra-answer')
  }
}

/**
 * Clients that leave at every stage: inside the head, after it, inside the body, after the whole
 * request, inside the answer, or between pipelined answers; by FIN, RST or a plain close.
 */
async function leaving(c: Case): Promise<void> {
  const rng = c.rng
  const stage = rng.weighted([['cut-head', 25], ['after-head', 10], ['cut-body', 15], ['after-request', 20], ['mid-answer', 20], ['pipeline-cut', 10]] as const)
  const how = rng.weighted([['destroy', 45], ['reset', 20], ['end', 35]] as const)
  c.rec.note = `${stage} by ${how}`
  const w = c.open()
  const leave = async (spec: ReqSpec, ok: readonly string[] | null, i = 0): Promise<void> => {
    if (how !== 'end') {
      w.destroy(how === 'reset')
      c.tally('left')
      return
    }
    w.end()
    await w.until(answered(w, i))
    c.judge({ ...spec, ok }, w.reader.answers[i], w, [spec])
    if (!(await w.untilClosed())) c.unexpected(`${stage}: no close after the client half-closed`, `id ${spec.id}`)
  }
  switch (stage) {
    case 'cut-head': {
      const spec = c.request()
      w.reader.expect(spec.method === 'HEAD')
      w.write(spec.head.subarray(0, rng.int(1, spec.head.length - 1)))
      await tick()
      return leave(spec, ['closed', '400'])
    }
    case 'after-head':
    case 'cut-body': {
      const spec = c.request({ body: 'always', minBody: 2 })
      w.reader.expect(false)
      w.write(spec.head)
      if (stage === 'cut-body') await c.send(w, spec.body.subarray(0, rng.int(1, spec.body.length - 1)), 2)
      await tick()
      // An upstream may have answered already (kind `early`); else the proxy just closes.
      return leave(spec, null)
    }
    case 'after-request': {
      const spec = c.request()
      w.reader.expect(spec.method === 'HEAD')
      await c.send(w, bytesOf(spec))
      // A half-close after a whole request still gets its answer (as node:http gives it).
      return leave(spec, KINDS[spec.kind]!.ok.concat(spec.method === 'HEAD' ? ['200'] : []))
    }
    case 'mid-answer': {
      const kind = rng.weighted([['large', 40], ['chunked', 20], ['slow', 20], ['plain', 20]] as const)
      const spec = c.request({ body: 'never', kinds: [[kind, 1]] })
      w.reader.expect(spec.method === 'HEAD')
      await c.send(w, bytesOf(spec))
      const after = rng.int(1, kind === 'large' ? LARGE : 200)
      await w.until(() => w.received >= after || w.reader.answers[0]?.complete === true)
      return leave(spec, KINDS[kind]!.ok.concat(spec.method === 'HEAD' ? ['200'] : []))
    }
    case 'pipeline-cut': {
      const n = rng.int(2, 4)
      const specs: ReqSpec[] = []
      for (let i = 0; i < n; i++) specs.push(c.request({ body: 'never' }))
      for (const s of specs) w.reader.expect(s.method === 'HEAD')
      w.write(Buffer.concat(specs.map(bytesOf)))
      await w.until(answered(w, 0))
      c.judge(specs[0]!, w.reader.answers[0], w, specs)
      if (endsConnection(specs[0]!, w.reader.answers[0])) {
        w.destroy()
        return
      }
      if (how !== 'end') {
        w.destroy(how === 'reset')
        c.tally('left')
        return
      }
      w.end()
      await w.untilClosed()
      for (let i = 1; i < n; i++) c.judge({ ...specs[i]!, ok: null }, w.reader.answers[i], w, specs, 'closed-after-client-end')
    }
  }
}

function upgradeHead(rng: Rng, path: string): Buffer {
  const conn = rng.pick(['Upgrade', 'upgrade', 'keep-alive, Upgrade', 'Upgrade, HTTP2-Settings'])
  const key = rng.bytes(16).toString('base64')
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: fuzz\r\nConnection: ${conn}\r\nUpgrade: websocket\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`, 'latin1')
}

/** WebSocket upgrades the upstream accepts, then echoes; the client may leave at any stage. */
async function upgradeAccepted(c: Case): Promise<void> {
  const rng = c.rng
  const id = c.newId()
  c.sent++
  const path = rng.chance(0.2) ? `/ws-slow/${id}` : `/ws-accept/${id}`
  const head = upgradeHead(rng, path)
  const early = rng.chance(0.3) ? Buffer.concat([Buffer.from(`id=${id};`), rng.bytes(rng.int(0, 500))]) : EMPTY
  const payload = Buffer.concat([Buffer.from(`id=${id};`), rng.bytes(rng.int(1, 4000))])
  const stage = rng.weighted([['full', 64], ['cut-head', 8], ['before-101', 8], ['half-close', 6], ['after-101', 7], ['mid-echo', 7]] as const)
  const how = rng.weighted([['destroy', 50], ['reset', 20], ['end', 30]] as const)
  c.rec.note = `${path.split('/')[1]} ${stage} by ${how}${early.length > 0 ? ', bytes after the head' : ''}`
  const spec = handMade(id, 'GET', 'ws-accept', { mutated: false, valid: true, ok: ['101'] })
  const w = c.open()
  w.reader.expect(false)
  if (stage === 'cut-head') {
    w.write(head.subarray(0, rng.int(1, head.length - 1)))
    await tick()
    if (how !== 'end') return void w.destroy(how === 'reset')
    w.end()
    await w.untilClosed()
    c.judge({ ...spec, ok: ['closed', '400'] }, w.reader.answers[0], w, [spec])
    return
  }
  await c.send(w, Buffer.concat([head, early]))
  if (stage === 'before-101') return void w.destroy(how === 'reset')
  if (stage === 'half-close') {
    w.end()
    if (!(await w.untilClosed())) c.unexpected('no close after the client half-closed an upgrade')
    c.judge({ ...spec, ok: null }, w.reader.answers[0], w, [spec])
    return
  }
  await w.until(() => w.reader.answers.length > 0 || w.reader.malformed !== null)
  const a = w.reader.answers[0]
  c.judge(spec, a, w, [spec])
  if (a?.status !== 101) return void w.destroy()
  if (stage === 'after-101') {
    if (how !== 'end') return void w.destroy(how === 'reset')
    w.end()
    if (!(await w.untilClosed())) c.unexpected('tunnel not closed after the client half-closed it')
    return
  }
  await c.send(w, payload)
  if (stage === 'mid-echo') return void w.destroy(how === 'reset')
  const want = Buffer.concat([early, payload])
  await w.until(() => w.reader.tunnelBytes >= want.length)
  const got = Buffer.concat(w.reader.tunnel)
  if (got.equals(want)) c.tally('echo-ok')
  else if (got.length < want.length) {
    c.tally('echo-short')
    c.unexpected(`tunnel echo short: ${got.length} of ${want.length} bytes`, `id ${id}`)
  } else {
    const text = got.toString('latin1')
    const other = [...text.matchAll(MARKER)].map((m) => m[1]!).find((x) => x !== id)
    c.run.leak(other !== undefined ? 'crossed' : 'corrupt', `${c.rec.tag} tunnel ${id} echoed ${got.length} bytes for ${want.length}${other !== undefined ? `, with ${other}` : ''}`)
  }
  if (w.closed) return
  if (how === 'end') {
    w.end()
    if (!(await w.untilClosed())) c.unexpected('tunnel not closed after the client half-closed it')
  } else w.destroy(how === 'reset')
}

/** Upgrades the upstream declines (on its raw socket), cannot take, or that are no upgrade at all. */
async function upgradeDeclined(c: Case): Promise<void> {
  const rng = c.rng
  const variant = rng.weighted([
    ['decline', 25],
    ['decline-close', 15],
    ['decline-body', 15],
    ['reset', 10],
    ['nowhere', 5],
    ['behind', 10],
    ['connect', 8],
    ['no-connection', 6],
    ['followed', 6],
  ] as const)
  const stage = rng.weighted([['full', 80], ['cut-head', 8], ['before-answer', 7], ['half-close', 5]] as const)
  c.rec.note = `${variant} ${stage}`
  const id = c.newId()
  c.sent++
  const ok: Record<typeof variant, readonly string[]> = {
    decline: ['404'],
    'decline-close': ['404'],
    'decline-body': ['404'],
    reset: ['502'],
    nowhere: ['502'],
    behind: ['200'],
    // Refused either way: as an upgrade we do not tunnel (405) or as a target that is not a path (400).
    connect: ['405', '400'],
    'no-connection': ['404'],
    followed: ['404'],
  }
  const w = c.open()
  let spec = handMade(id, 'GET', `ws-${variant}`, { mutated: false, valid: true, ok: ok[variant] })
  let specs = [spec]
  let bytes: Buffer
  switch (variant) {
    case 'behind': {
      // An upgrade pipelined behind a request in flight: the request's answer comes first.
      const first = c.request({ body: 'never', kinds: [['slow', 1]], version: '1.1' })
      spec = { ...first, ok: ['200'] }
      specs = [spec, handMade(id, 'GET', 'ws-accept', { mutated: false, valid: false })]
      bytes = Buffer.concat([bytesOf(first), upgradeHead(rng, `/ws-accept/${id}`)])
      break
    }
    case 'connect':
      bytes = Buffer.from('CONNECT fuzz:443 HTTP/1.1\r\nHost: fuzz:443\r\n\r\n', 'latin1')
      break
    case 'no-connection':
      bytes = Buffer.from(`GET /ws-accept/${id} HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n\r\n`, 'latin1')
      break
    case 'followed':
      specs = [spec, handMade(c.newId(), 'GET', 'plain', { mutated: false, valid: false })]
      bytes = Buffer.concat([upgradeHead(rng, `/ws-decline/${id}`), Buffer.from(`GET /r/${specs[1]!.id}/plain HTTP/1.1\r\nHost: fuzz\r\n\r\n`, 'latin1')])
      break
    default:
      bytes = upgradeHead(rng, `/ws-${variant}/${id}`)
  }
  for (const s of specs) w.reader.expect(s.method === 'HEAD')
  if (stage === 'cut-head') {
    w.write(bytes.subarray(0, rng.int(1, bytes.length - 1)))
    await tick()
    if (rng.chance(0.5)) return void w.destroy()
    w.end()
    await w.untilClosed()
    c.judge({ ...spec, ok: null }, w.reader.answers[0], w, specs)
    return
  }
  await c.send(w, bytes)
  if (stage === 'before-answer') return void w.destroy(rng.chance(0.3))
  if (stage === 'half-close') w.end()
  await w.until(answered(w, 0))
  c.judge(stage === 'half-close' ? { ...spec, ok: null } : spec, w.reader.answers[0], w, specs)
  const a = w.reader.answers[0]
  if (variant === 'decline-body' && a?.status === 404 && a.complete && a.body.toString('latin1') !== `id=${id};declined\n`) {
    c.unexpected('declined upgrade: body not as sent', JSON.stringify(a.body.toString('latin1').slice(0, 80)))
  }
  if (variant === 'no-connection') return void w.destroy()
  // A declined (or refused) upgrade ends its connection: the client must see the close.
  if (!(await w.untilClosed())) c.unexpected(`${variant}: connection left open after the answer`, `id ${id}`)
  const answers = w.reader.answers
  for (let i = 1; i < answers.length; i++) {
    c.checkLeak(specs[Math.min(i, specs.length - 1)]!, answers[i]!, specs)
    c.tally(`then ${outcomeOf(answers[i], w)}`)
  }
}

type FamilyRun = (c: Case) => Promise<void>

/** Every family, its weight among cases, and what it does. */
export const FAMILIES: Readonly<Record<string, { readonly weight: number; readonly run: FamilyRun }>> = {
  sequential: { weight: 18, run: (c) => sequential(c, 'maybe') },
  body: { weight: 10, run: (c) => sequential(c, 'always') },
  pipeline: { weight: 14, run: pipeline },
  expect: { weight: 4, run: expectContinue },
  garbage: { weight: 8, run: garbage },
  'bare-lf': { weight: 4, run: bareLf },
  mutated: { weight: 12, run: mutated },
  'long-headers': { weight: 3, run: longHeaders },
  leaving: { weight: 14, run: leaving },
  'upgrade-accepted': { weight: 6, run: upgradeAccepted },
  'upgrade-declined': { weight: 5, run: upgradeDeclined },
}
export const FAMILY_WEIGHTS = Object.entries(FAMILIES).map(([k, v]) => [k, v.weight] as const)
