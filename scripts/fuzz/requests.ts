// Requests, and what their answers must be.

import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import type { Answer, Rng, Wire } from '../fuzz-wire.js'
import { EMPTY } from './options.js'
import type { Run } from './run-state.js'
import { KINDS, KIND_WEIGHTS, answerBody } from './upstreams.js'


export interface ReqSpec {
  readonly id: string
  readonly method: string
  readonly kind: string
  readonly head: Buffer
  /** The body as framed on the wire (chunked or not). */
  readonly body: Buffer
  /** The body's content, and its sha1 (the upstream echoes both). */
  readonly length: number
  readonly sha: string
  /** Asked the proxy to close after it (Connection: close, or HTTP/1.0 without keep-alive). */
  readonly close: boolean
  /** Bytes may have been changed after it was made: its id may not be its own any more. */
  readonly mutated: boolean
  /** A well-formed request: its outcome must be one its kind allows (or `ok`). */
  readonly valid: boolean
  /** Outcomes allowed instead of the kind's; null: any but `timeout` and `malformed`. */
  readonly ok?: readonly string[] | null
}

export interface RequestOptions {
  readonly body?: 'maybe' | 'always' | 'never'
  readonly maxBody?: number
  readonly minBody?: number
  readonly kinds?: readonly (readonly [string, number])[]
  readonly version?: '1.0' | '1.1'
  /** The last request of its connection: it may ask to close. */
  readonly last?: boolean
  readonly expectContinue?: boolean
  readonly extraHeaders?: readonly (readonly [string, string])[]
  /** Line ends: CRLF, or bare LF for all lines, only the blank line, or some lines. */
  readonly eol?: 'crlf' | 'lf' | 'last-lf' | 'mixed'
  readonly query?: string
}

const METHODS = [['GET', 55], ['HEAD', 10], ['POST', 15], ['PUT', 8], ['PATCH', 4], ['DELETE', 5], ['OPTIONS', 3]] as const
const BODY_METHODS = [['POST', 60], ['PUT', 30], ['PATCH', 10]] as const
const NO_BODY_METHODS = [['GET', 75], ['HEAD', 15], ['DELETE', 6], ['OPTIONS', 4]] as const
const WITH_BODY = new Set(['POST', 'PUT', 'PATCH'])
/** Body sizes: empty, small, up to the 4096 bytes the proxy holds for retries, and past it (streamed). */
const SIZES: readonly (readonly [readonly [number, number], number])[] = [
  [[0, 0], 8],
  [[1, 64], 20],
  [[65, 4096], 40],
  [[4097, 20_000], 25],
  [[20_001, 100_000], 7],
]

export function sha1(b: Buffer): string {
  return createHash('sha1').update(b).digest('hex')
}

function casing(rng: Rng, name: string): string {
  const r = rng.next()
  return r < 0.7 ? name : r < 0.85 ? name.toLowerCase() : name.toUpperCase()
}

function encodeChunked(rng: Rng, payload: Buffer, eol: string): Buffer {
  const parts: Buffer[] = []
  for (let at = 0; at < payload.length; ) {
    const n = Math.min(rng.int(1, 8192), payload.length - at)
    parts.push(Buffer.from(`${n.toString(16)}${rng.chance(0.1) ? ';ext=1' : ''}${eol}`, 'latin1'), payload.subarray(at, at + n), Buffer.from(eol, 'latin1'))
    at += n
  }
  parts.push(Buffer.from(rng.chance(0.1) ? `0${eol}x-trailer: t${eol}${eol}` : `0${eol}${eol}`, 'latin1'))
  return Buffer.concat(parts)
}

export function makeRequest(run: Run, rng: Rng, o: RequestOptions = {}): ReqSpec {
  const want = o.body ?? 'maybe'
  const method = want === 'always' ? rng.weighted(BODY_METHODS) : want === 'never' ? rng.weighted(NO_BODY_METHODS) : rng.weighted(METHODS)
  const kind = rng.weighted(o.kinds ?? KIND_WEIGHTS)
  const id = run.newId()
  const version = o.version ?? (rng.chance(0.08) ? '1.0' : '1.1')
  const headers: (readonly [string, string])[] = []
  if (version === '1.1' || rng.chance(0.5)) headers.push([casing(rng, 'Host'), rng.pick(['fuzz.test', 'fuzz.test:80', 'localhost'])])
  if (rng.chance(0.5)) headers.push(['User-Agent', 'zoo-fuzz/1'])
  if (rng.chance(0.3)) headers.push(['Accept', '*/*'])
  if (rng.chance(0.1)) headers.push(['X-Forwarded-For', '10.1.2.3'])
  if (rng.chance(0.05)) headers.push(['Connection', 'keep-alive, X-Hop'], ['X-Hop', 'dropped'])
  for (let i = rng.int(0, 2); i > 0; i--) headers.push([`X-Pad-${i}`, rng.text(rng.int(0, 200))])
  let close = false
  if (version === '1.0') {
    if (rng.chance(0.5)) headers.push([casing(rng, 'Connection'), 'keep-alive'])
    else close = true
  } else if (o.last === true && rng.chance(0.25)) {
    headers.push([casing(rng, 'Connection'), 'close'])
    close = true
  }
  if (o.extraHeaders !== undefined) headers.push(...o.extraHeaders)
  let payload: Buffer = EMPTY
  let body: Buffer = EMPTY
  const eolMode = o.eol ?? 'crlf'
  const eol = eolMode === 'lf' ? '\n' : '\r\n'
  if (WITH_BODY.has(method)) {
    const [lo, hi] = rng.weighted(SIZES)
    const size = Math.max(o.minBody ?? 0, Math.min(rng.int(lo, hi), o.maxBody ?? Infinity))
    payload = rng.bytes(size)
    if (method === 'POST' && rng.chance(0.1)) headers.push(['Idempotency-Key', id])
    if (version === '1.1' && rng.chance(0.35)) {
      headers.push([casing(rng, 'Transfer-Encoding'), 'chunked'])
      body = encodeChunked(rng, payload, eol)
    } else {
      headers.push([casing(rng, 'Content-Length'), String(size)])
      body = payload
    }
  }
  if (o.expectContinue === true) headers.push([casing(rng, 'Expect'), '100-continue'])
  const lines = [`${method} /r/${id}/${kind}${o.query ?? (rng.chance(0.1) ? `?q=${rng.int(0, 1e6)}` : '')} HTTP/${version}`]
  for (const [n, v] of headers) lines.push(`${n}: ${v}`)
  let head = ''
  for (const line of lines) head += line + (eolMode === 'mixed' && rng.chance(0.5) ? '\n' : eol)
  head += eolMode === 'crlf' || (eolMode === 'mixed' && rng.chance(0.5)) ? '\r\n' : '\n'
  return {
    id,
    method,
    kind,
    head: Buffer.from(head, 'latin1'),
    body,
    length: payload.length,
    sha: sha1(payload),
    close,
    mutated: false,
    valid: eolMode === 'crlf',
  }
}

export function bytesOf(spec: ReqSpec): Buffer {
  return Buffer.concat([spec.head, spec.body])
}

/** A spec for a request the harness wrote by hand (garbage, upgrades): only its id is known. */
export function handMade(id: string, method: string, kind: string, o: { valid?: boolean; mutated?: boolean; ok?: readonly string[] | null } = {}): ReqSpec {
  return { id, method, kind, head: EMPTY, body: EMPTY, length: 0, sha: '', close: true, mutated: o.mutated ?? true, valid: o.valid ?? false, ok: o.ok }
}

export function expectedBody(spec: ReqSpec): string | null {
  if (spec.kind === 's204' || spec.kind === 's304') return ''
  if (KINDS[spec.kind] === undefined) return null
  return answerBody(spec.id, spec.kind, spec.length, spec.sha)
}

/**
 * What a request got: its answer's status, or `closed` (no answer), `truncated` (part of one),
 * `timeout` (nothing more within BOUND_MS), `malformed` (bytes that are not HTTP/1.1).
 * `503-no-endpoint`: the balancer had no instance to offer (both ejected, or one ejected and the
 * other on probation with its one probe in flight): the failing kinds eject instances on purpose.
 */
export function outcomeOf(a: Answer | undefined, wire: Wire, spec?: ReqSpec): string {
  if ((a === undefined || !a.complete) && wire.reader.malformed !== null) return 'malformed'
  if (a === undefined) return wire.timedOut ? 'timeout' : 'closed'
  if (!a.complete) return wire.timedOut ? 'timeout' : 'truncated'
  if (a.status === 503 && a.headers.get('x-id') === undefined) {
    // A HEAD shows no body, only the JSON type of the proxy's error; an upgrade refused for want
    // of an instance gets a bare 503 (lib/http/websocket.ts).
    const json = a.headers.get('content-type') === 'application/json'
    if (a.body.includes('ZP_ERR_NO_ENDPOINT') || (spec?.method === 'HEAD' && json) || (spec?.kind.startsWith('ws-') === true && a.body.length === 0)) {
      return '503-no-endpoint'
    }
  }
  return String(a.status)
}

/**
 * Whether `outcome` is a right one for `spec`. `503-no-endpoint` never is: both instances stay
 * routable all run long, and an ejected one still takes a first attempt (panic mode), so "no
 * instance" is a wrong answer. `dropped` is judged where it is forced (Case.judge).
 */
export function allowed(spec: ReqSpec, outcome: string): boolean {
  if (outcome === 'dropped') return false
  // Any ending but a hang, a malformed answer, or an answer cut that the upstream sent whole.
  if (spec.ok === null) return outcome !== 'timeout' && outcome !== 'malformed' && (outcome !== 'truncated' || truncates(spec))
  // No answer after the client's half-close, where a cut connection is a right answer (a broken
  // upstream answer): the same outcome, seen from a client that had stopped sending.
  if (outcome === 'closed-after-client-end') return allowed(spec, 'closed')
  if (spec.ok !== undefined) return spec.ok.includes(outcome)
  const k = KINDS[spec.kind]
  if (k === undefined) return true
  // A HEAD to an upstream that sends a body anyway (or resets after the head): the head is a
  // whole answer already; what the proxy makes of the rest may differ, as long as it ends.
  if (spec.method === 'HEAD' && (k.raw === true || spec.kind === 'reset')) return outcome !== 'timeout' && outcome !== 'malformed'
  return k.ok.includes(outcome)
}

/** The upstream may end its answer to `spec` early (a reset, a broken chunk): a cut one is right. */
function truncates(spec: ReqSpec): boolean {
  return KINDS[spec.kind]?.ok.includes('truncated') === true
}

/** The connection cannot carry another answer after `a`. */
export function endsConnection(spec: ReqSpec, a: Answer | undefined): boolean {
  if (a === undefined || !a.complete) return true
  const c = a.headers.get('connection') ?? ''
  return spec.close || /close/i.test(c)
}

export const MARKER = /id=([0-9a-z]{1,8}-[0-9a-z]{4});/g
