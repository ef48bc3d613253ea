// What a service reports about its requests and attempts: the port ops/metrics.ts plugs into,
// kept apart from the service so that the operations layer needs only this.

import type { ClientProtocol } from './client-side.js'

export type AttemptOutcome = 'ok' | 'connect' | 'reset' | 'timeout' | 'status'

/** What a service reports (ops/metrics.ts counts it); all no-ops when metrics are off. */
export interface ServiceMetrics {
  /** One request answered; `protocol`: how the client spoke. */
  request(status: number, seconds: number, protocol: ClientProtocol): void
  attempt(outcome: AttemptOutcome): void
  retry(): void
  budgetExhausted(): void
  /** A gRPC call answered with status `code` (0-16), the proxy's own answers included (issue 27). */
  grpcResponse?(code: number): void
}

export const NO_METRICS: ServiceMetrics = {
  request() {},
  attempt() {},
  retry() {},
  budgetExhausted() {},
}
