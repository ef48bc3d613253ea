/** One upstream instance as discovery sees it. Immutable; `key` is its znode path. */
export interface Endpoint {
  readonly key: string
  readonly host: string
  readonly port: number
  /** >= 0; 0 means no new requests. */
  readonly weight: number
  readonly state: 'up' | 'draining'
  readonly meta: Readonly<Record<string, unknown>>
}

export function endpointsEqual(a: Endpoint, b: Endpoint): boolean {
  return (
    a.key === b.key &&
    a.host === b.host &&
    a.port === b.port &&
    a.weight === b.weight &&
    a.state === b.state &&
    JSON.stringify(a.meta) === JSON.stringify(b.meta)
  )
}
