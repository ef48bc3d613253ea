// Streaming one request to one upstream and its answer back to the client, on undici's raw
// dispatch API (no per-request stream.pipeline or AbortController: see shared/PERFORMANCE-NOTES.md).

import { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { ProxyError, UpstreamError, classifyTransportError } from './errors.js'
import { HOP_BY_HOP } from './h1/front.js'
import type { Exchange } from './h1/front.js'

const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'])

/** Extra names a `Connection` header lists are hop-by-hop too. */
function connectionTokens(value: string | undefined): Set<string> | null {
  if (value === undefined) return null
  // Nearly every client says just "keep-alive": no Set is made until a real name turns up.
  let set: Set<string> | null = null
  for (const t of value.split(',')) {
    const name = t.trim().toLowerCase()
    if (name !== '' && name !== 'close' && name !== 'keep-alive') (set ??= new Set()).add(name)
  }
  return set
}

/**
 * The upstream request's headers as a flat [name, value, ...] list: the client's own (its Host
 * kept), less hop-by-hop ones, with X-Forwarded-For appended to and -Proto/-Host set.
 */
export function upstreamHeaders(ex: Exchange): string[] {
  const raw = ex.rawHeaders
  const extra = connectionTokens(ex.headers.connection)
  const out: string[] = []
  let xff: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || FORWARDED.has(lower) || (extra !== null && extra.has(lower))) {
      if (lower === 'x-forwarded-for') xff = xff === undefined ? raw[i + 1]! : `${xff}, ${raw[i + 1]!}`
      continue
    }
    out.push(name, raw[i + 1]!)
  }
  const client = ex.remoteAddress
  out.push('x-forwarded-for', xff === undefined ? client : `${xff}, ${client}`)
  out.push('x-forwarded-proto', 'http')
  if (ex.headers.host !== undefined) out.push('x-forwarded-host', ex.headers.host)
  return out
}

/** The first value of header `name` (lower case) in undici's raw list, or undefined. */
export function rawHeader(raw: readonly Buffer[], name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!
    if (n.length === name.length && n.toString('latin1').toLowerCase() === name) return raw[i + 1]!.toString('latin1')
  }
  return undefined
}

/**
 * A request body that can be handed to one attempt and, as long as that attempt never read from
 * it, to another: it only starts pulling from the client when undici first asks, and destroying
 * it (undici does on error) never destroys the client's request.
 */
export class BodyTap extends Readable {
  readonly #src: Readable
  readonly #prefix: readonly Buffer[]
  #started = false

  /** `prefix`: chunks already read from `src`, sent first. */
  constructor(src: Readable, prefix: readonly Buffer[] = []) {
    super()
    this.#src = src
    this.#prefix = prefix
  }

  /** True once a byte may have gone upstream: the body can no longer be replayed. */
  get started(): boolean {
    return this.#started
  }

  readonly #onData = (chunk: Buffer): void => {
    if (!this.push(chunk)) this.#src.pause()
  }
  readonly #onEnd = (): void => {
    this.push(null)
  }
  readonly #onError = (err: Error): void => {
    this.destroy(err)
  }

  override _read(): void {
    if (!this.#started) {
      this.#started = true
      for (const chunk of this.#prefix) this.push(chunk)
      if (this.#src.readableEnded) {
        this.push(null)
        return
      }
      this.#src.on('data', this.#onData)
      this.#src.once('end', this.#onEnd)
      this.#src.once('error', this.#onError)
    }
    this.#src.resume()
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.#src.off('data', this.#onData)
    this.#src.off('end', this.#onEnd)
    this.#src.off('error', this.#onError)
    cb(err)
  }
}

/** Asked with the upstream's status before anything is written to the client. */
export interface StatusRetry {
  /** True means: drop this answer, the caller will retry elsewhere (the attempt rejects with kind `status`). */
  retryOnStatus(status: number, rawHeaders: readonly Buffer[]): boolean
}

export interface AttemptOptions {
  readonly path: string
  readonly method: Dispatcher.HttpMethod
  readonly headers: string[]
  readonly body: Buffer | Readable | null
  readonly headersTimeoutMs: number
  readonly bodyTimeoutMs: number
  readonly retryOnStatus: StatusRetry | null
}

export interface AttemptResult {
  readonly status: number
  /** Time from dispatch to response headers. */
  readonly latencyMs: number
}

const CLIENT_GONE = 'ZP_ERR_CLIENT_ABORT'

/**
 * undici dispatch handler that writes the upstream's answer straight into the client response.
 *
 * It speaks undici's callback interface (onConnect / onHeaders / onData / onComplete / onError),
 * the one undici 7's HTTP/1.1 core calls. A handler written to the newer controller interface is
 * wrapped per request (an UnwrapHandler, a controller, and the raw headers parsed into an object
 * we would then copy again); this one takes the raw headers as they come. The callback interface
 * is marked deprecated in undici's types but is what its own core and interceptors run on in 7.x.
 */
class ResponseWriter implements Dispatcher.DispatchHandler {
  readonly #res: Exchange
  readonly #retry: StatusRetry | null
  readonly #resolve: (r: AttemptResult) => void
  readonly #reject: (e: Error) => void
  readonly #startedAt = performance.now()
  #abort: ((err?: Error) => void) | null = null
  #resume: (() => void) | null = null
  #status = 0
  #latencyMs = 0
  #responseStarted = false
  #done = false

  constructor(res: Exchange, retry: StatusRetry | null, resolve: (r: AttemptResult) => void, reject: (e: Error) => void) {
    this.#res = res
    this.#retry = retry
    this.#resolve = resolve
    this.#reject = reject
    res.onAbort = this.#onClientClose
    res.onDrain = this.#onDrain
  }

  readonly #onClientClose = (): void => {
    if (!this.#done) this.#abort?.(new ProxyError(CLIENT_GONE, 'client went away'))
  }

  readonly #onDrain = (): void => {
    this.#resume?.()
  }

  #finish(): void {
    this.#done = true
    this.#res.onAbort = null
    this.#res.onDrain = null
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort
    if (this.#res.destroyed) abort(new ProxyError(CLIENT_GONE, 'client went away'))
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true // 1xx informational: Node answers the client's own Expect itself
    this.#status = statusCode
    this.#latencyMs = performance.now() - this.#startedAt
    if (this.#retry !== null && this.#retry.retryOnStatus(statusCode, rawHeaders)) {
      this.#abort?.(new UpstreamError('status', `upstream answered ${statusCode}`, false))
      return false
    }
    this.#responseStarted = true
    this.#resume = resume
    const res = this.#res
    res.writeHeadRaw(statusCode, statusText, rawHeaders)
    return true
  }

  onData(chunk: Buffer): boolean {
    // undici 7 hands over an empty chunk at about every socket read of a long body; writing one
    // costs a trip through Node's write path and a zero-byte write(2) to the client.
    if (chunk.length === 0) return true
    // Backpressure: a slow client pauses the upstream socket (return false) instead of growing
    // our memory; the client socket's 'drain' resumes it.
    return this.#res.write(chunk)
  }

  onComplete(): void {
    this.#finish()
    this.#res.end()
    this.#resolve({ status: this.#status, latencyMs: this.#latencyMs })
  }

  onError(err: Error): void {
    this.#finish()
    if (err instanceof UpstreamError || (err instanceof ProxyError && err.code === CLIENT_GONE)) {
      this.#reject(err)
      return
    }
    const kind = classifyTransportError(err)
    const code = (err as { code?: string }).code ?? err.name
    this.#reject(new UpstreamError(kind, `upstream ${kind} (${code})`, this.#responseStarted, err))
  }
}

/** One attempt at one upstream. Resolves when the whole response went to the client. */
export function forwardAttempt(dispatcher: Dispatcher, res: Exchange, opts: AttemptOptions): Promise<AttemptResult> {
  return new Promise<AttemptResult>((resolve, reject) => {
    const writer = new ResponseWriter(res, opts.retryOnStatus, resolve, reject)
    dispatcher.dispatch(
      {
        path: opts.path,
        method: opts.method,
        headers: opts.headers,
        body: opts.body,
        headersTimeout: opts.headersTimeoutMs,
        bodyTimeout: opts.bodyTimeoutMs,
        // The retry loop owns retries; undici must not replay a request on its own.
        idempotent: false,
      },
      writer,
    )
  })
}
