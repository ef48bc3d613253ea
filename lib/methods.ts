// What HTTP says about methods, written once for the layers that decide by it: the retry policy
// (balancing/retry.ts) and the pool's one resend on a connection the upstream had just closed
// (http/h1/upstream.ts).

/** RFC 9110 §9.2.2 idempotent methods: a server may not act on them twice. */
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])
