// What the client side enforces, with its defaults written once: the config's defaults
// (config.ts) and a front end built without a config (tests, the library API) both use these.
// Here, below both, so that config.ts never imports from the http layer.

export interface FrontLimits {
  /** Longest silence between two reads of a request body while the proxy reads it, ms (nginx's client_body_timeout). */
  readonly clientBodyTimeoutMs: number
  /** Largest request body in bytes, declared or streamed; 0: none. */
  readonly maxBodyBytes: number
  /** Most header fields in a request (HAProxy's tune.http.maxhdr is 101). */
  readonly maxHeaders: number
  /** HTTP/2 clients: streams one session may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS), 1..10000. */
  readonly maxConcurrentStreams: number
}

export const DEFAULT_LIMITS: FrontLimits = { clientBodyTimeoutMs: 60_000, maxBodyBytes: 0, maxHeaders: 100, maxConcurrentStreams: 100 }
