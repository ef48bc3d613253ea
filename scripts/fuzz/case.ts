// One case: a connection (or a few) and the requests on it, and the judge of its answers.

import { Buffer } from 'node:buffer'
import process from 'node:process'
import { setTimeout as sleep } from 'node:timers/promises'
import { Wire } from '../fuzz-wire.js'
import type { Answer, Rng } from '../fuzz-wire.js'
import { BOUND_MS } from './options.js'
import { MARKER, allowed, expectedBody, makeRequest, outcomeOf } from './requests.js'
import type { ReqSpec, RequestOptions } from './requests.js'
import { describeCase } from './run-state.js'
import type { CaseRecord, Run } from './run-state.js'
import { KINDS } from './upstreams.js'


export class Case {
  readonly run: Run
  readonly rng: Rng
  readonly port: number
  readonly family: string
  /** Requests this case may still count. */
  readonly max: number
  readonly rec: CaseRecord
  sent = 0
  /** The ids of this case's own requests: bytes carrying any other issued id are another's. */
  readonly ids = new Set<string>()

  constructor(run: Run, rng: Rng, port: number, tag: string, family: string, max: number) {
    this.run = run
    this.rng = rng
    this.port = port
    this.family = family
    this.max = max
    this.rec = { tag, family, note: '', wires: [] }
  }

  open(): Wire {
    const w = new Wire(this.port, BOUND_MS, (gone) => {
      this.run.wires.delete(gone)
      if (gone.error !== null && gone.received === 0 && gone.error !== 'ECONNRESET' && gone.error !== 'EPIPE') {
        this.run.connectErrors[gone.error] = (this.run.connectErrors[gone.error] ?? 0) + 1
      }
    })
    this.run.wires.add(w)
    this.rec.wires.push(w)
    return w
  }

  request(o: RequestOptions = {}): ReqSpec {
    this.sent++
    const spec = makeRequest(this.run, this.rng, o)
    this.ids.add(spec.id)
    return spec
  }

  /** An id for a request this case writes by hand. */
  newId(): string {
    const id = this.run.newId()
    this.ids.add(id)
    return id
  }

  tally(outcome: string): void {
    const f = this.run.family(this.family)
    f.outcomes[outcome] = (f.outcomes[outcome] ?? 0) + 1
  }

  unexpected(what: string, detail = ''): void {
    this.run.note(`${this.family}: ${what}`, `${this.rec.tag}${this.rec.note === '' ? '' : ` (${this.rec.note})`}${detail === '' ? '' : ` ${detail}`}`)
  }

  /** Writes `bytes` at once or in pieces, each piece a turn of the event loop apart. */
  async send(w: Wire, bytes: Buffer, pieces = 3): Promise<void> {
    const rng = this.rng
    if (bytes.length < 2 || pieces < 2 || rng.chance(0.7)) {
      w.write(bytes)
      return
    }
    const cuts: number[] = []
    for (let i = rng.int(1, pieces - 1); i > 0; i--) cuts.push(rng.int(1, bytes.length - 1))
    cuts.sort((a, b) => a - b).push(bytes.length)
    let at = 0
    for (const cut of cuts) {
      if (cut <= at) continue
      w.write(bytes.subarray(at, cut))
      at = cut
      if (rng.chance(0.1)) await sleep(1)
      else await tick()
    }
  }

  /**
   * Checks one answer against the request it answers: its outcome is tallied (and must be one its
   * kind allows if the request was valid), and it must carry that request's id and body only.
   */
  judge(spec: ReqSpec, a: Answer | undefined, w: Wire, siblings: readonly ReqSpec[], forced?: string): string {
    const outcome = forced !== undefined && a === undefined ? forced : outcomeOf(a, w, spec)
    this.tally(outcome)
    if (a !== undefined) this.checkLeak(spec, a, siblings)
    // Not answered because an earlier answer ended the connection: right only if it then closed.
    const right = outcome === 'dropped' ? forced === 'dropped' && !w.timedOut : allowed(spec, outcome)
    if (spec.valid && !right) {
      const why =
        outcome === 'malformed'
          ? ` (${w.reader.malformed})`
          : a?.complete === true
            ? ` body ${JSON.stringify(a.body.toString('latin1').slice(0, 120))}`
            : outcome === 'timeout'
              ? `; ${describeCase(this.rec, true)}`
              : ''
      this.unexpected(`${spec.method} ${spec.kind} -> ${outcome}`, `id ${spec.id}${why}${process.env.FUZZ_DESCRIBE ? `; ${describeCase(this.rec, true)}` : ''}`)
    }
    return outcome
  }

  checkLeak(spec: ReqSpec, a: Answer, siblings: readonly ReqSpec[]): void {
    const run = this.run
    const foreign = (id: string) => id !== spec.id && (!spec.mutated || run.issued(id))
    let bad: string | null = null
    let other: string | null = null
    const xid = a.headers.get('x-id')
    const ok2xx = a.status >= 200 && a.status < 300
    // The common case first: an own answer whose body is exactly what the upstream sent.
    const want = !spec.mutated && a.complete && ok2xx && spec.method !== 'HEAD' ? expectedBody(spec) : null
    if (want !== null && xid === spec.id && a.body.length === want.length && a.body.toString('latin1') === want) return
    if (xid !== undefined && foreign(xid)) {
      bad = `x-id ${xid}`
      other = xid
    } else if (ok2xx && xid === undefined) bad = 'a 2xx answer without x-id (an answer nobody asked for)'
    else if (a.body.length > 0) {
      const text = a.body.toString('latin1')
      if (text.includes('POISON')) bad = 'the POISON answer in its body'
      else if (text.includes('id=')) {
        for (const m of text.matchAll(MARKER)) {
          if (foreign(m[1]!)) {
            bad = `body marker of ${m[1]}`
            other = m[1]!
            break
          }
        }
      }
    }
    const where = `${this.rec.tag} ${this.family}: ${spec.method} /r/${spec.id}/${spec.kind} got ${a.status}`
    if (bad !== null) {
      const sibling = other !== null && siblings.some((s) => s !== spec && s.id === other)
      run.leak(sibling ? 'crossedSameConnection' : 'crossed', `${where} with ${bad}; ${describeCase(this.rec, true)}`)
      return
    }
    if (!a.complete && !spec.mutated && ok2xx && spec.method !== 'HEAD' && xid === spec.id) {
      // What came of an answer cut short must still be the start of its own body.
      const whole = expectedBody(spec)
      if (whole !== null && !whole.startsWith(a.body.toString('latin1'))) {
        run.leak('corrupt', `${where}, cut after ${a.body.length} bytes that are not the start of its body; ${describeCase(this.rec, true)}`)
      }
      return
    }
    if (want === null || (a.body.length === want.length && a.body.toString('latin1') === want)) return
    const got = JSON.stringify(a.body.toString('latin1').slice(0, 120))
    if (KINDS[spec.kind]?.raw === true) this.unexpected(`${spec.method} ${spec.kind} -> body not as sent`, got)
    else run.leak('corrupt', `${where}, body ${a.body.length} bytes ${got}, wanted ${want.length} bytes; ${describeCase(this.rec, true)}`)
  }

  /**
   * The end of a case's connection: the client leaves (destroy), or half-closes and then the proxy
   * must close. Answers beyond the requests sent are checked too: nobody asked for them.
   */
  async finish(w: Wire, specs: readonly ReqSpec[], strict: boolean): Promise<void> {
    if (!w.closed && this.rng.chance(0.4)) {
      w.end()
      if (!(await w.untilClosed()) && strict) this.unexpected('no close after the client half-closed')
    }
    w.destroy()
    const answers = w.reader.answers
    for (let i = specs.length; i < answers.length; i++) {
      const last = specs[specs.length - 1]
      if (last !== undefined) this.checkLeak(last, answers[i]!, specs)
      this.tally('extra-answer')
      if (strict) this.unexpected(`an answer beyond the ${specs.length} request(s) sent (${answers[i]!.status})`)
    }
  }

  /**
   * The one class of stray bytes counted apart (docs/http.md, "What the fuzz run judges"): the
   * proxy's own 4xx refusal of a malformed head that began `HEAD`, sent with its JSON body. The
   * reader frames it as the answer to a HEAD, so the body shows as stray; the request was refused
   * as malformed before it was a HEAD request, and the connection closes after it.
   */
  refusalBody(w: Wire, stray: string): boolean {
    const last = w.reader.answers[w.reader.answers.length - 1]
    if (last === undefined || last.headers.get('x-id') !== undefined || last.status < 400 || last.status > 499) return false
    return /close/i.test(last.headers.get('connection') ?? '') && stray.startsWith('{"error":"ZP_ERR_') && String(Buffer.byteLength(stray, 'latin1')) === last.headers.get('content-length')
  }

  /**
   * After the case, each of its connections: no answer bytes that are not HTTP/1.1 (whatever the
   * request was, the proxy writes every answer itself), no bytes after the last answer, and none
   * of another request's id or the POISON answer among such bytes.
   */
  checkWires(): void {
    for (const w of this.rec.wires) {
      const r = w.reader
      const stray = r.strayBytes > 0 ? Buffer.concat(r.stray).toString('latin1') : ''
      const foreign = [...stray.matchAll(MARKER)].map((m) => m[1]!).find((id) => !this.ids.has(id) && this.run.issued(id))
      if (foreign !== undefined || stray.includes('POISON')) {
        this.run.leak('crossed', `${this.rec.tag} ${this.family}: bytes after the answers carry ${foreign ?? 'the POISON answer'}; ${describeCase(this.rec, true)}`)
      }
      if (r.strayBytes > 0 && r.malformed === null && this.refusalBody(w, stray)) this.run.headRefusalBodies++
      else if (r.malformed !== null) this.unexpected(`malformed answer bytes (${r.malformed.replace(/"[^]*$/, '...')})`, describeCase(this.rec, true))
      // Bytes cut inside a head by our own destroy or the bound are no fault of the proxy's.
      else if (r.strayBytes > 0 && !w.destroyedHere && !w.timedOut) this.unexpected('stray bytes after the last answer', `${JSON.stringify(stray.slice(0, 200))}; ${describeCase(this.rec, true)}`)
    }
  }
}

export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

export function answered(w: Wire, i: number): () => boolean {
  return () => w.reader.answers[i]?.complete === true || w.reader.malformed !== null
}
