/**
 * The one range of an instance's weight, wherever it comes from (znode data, `weights` in the
 * config, an admin override): 0 to 256, fractions allowed; 0 means no new requests. HAProxy's
 * range (its `weight` is 0-256). Bounded where it enters, so that no strategy's time or memory
 * can depend on a weight's magnitude: a znode outside it is clamped with a warning, the admin API
 * answers 400, the config exit 2.
 */
export const WEIGHT_MIN = 0
export const WEIGHT_MAX = 256

/** A finite number brought into WEIGHT_MIN..WEIGHT_MAX (non-numbers are the caller's to refuse). */
export function clampWeight(weight: number): number {
  return weight > WEIGHT_MAX ? WEIGHT_MAX : weight >= WEIGHT_MIN ? weight : WEIGHT_MIN
}

/** One upstream instance as discovery sees it. Immutable; `key` is its znode path. */
export interface Endpoint {
  readonly key: string
  readonly host: string
  readonly port: number
  /** WEIGHT_MIN..WEIGHT_MAX; 0 means no new requests. */
  readonly weight: number
  readonly state: 'up' | 'draining'
  readonly meta: Readonly<Record<string, unknown>>
}

export function endpointsEqual(a: Endpoint, b: Endpoint): boolean {
  if (a.key !== b.key || a.host !== b.host || a.port !== b.port || a.weight !== b.weight || a.state !== b.state) return false
  if (a.meta === b.meta) return true
  try {
    return JSON.stringify(a.meta) === JSON.stringify(b.meta)
  } catch {
    // A meta that cannot be written out (the codecs bound it; a snapshot file need not): differ.
    return false
  }
}
