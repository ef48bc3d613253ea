// The pure parts of the HTTP/2 front guard: every number taken from outside is bounded, and the
// header list is counted as RFC 9113 §6.5.2 counts it.

import assert from 'node:assert/strict'
import { DEFAULT_GUARD, DEFAULT_MAX_CONCURRENT_STREAMS, h2ServerSettings, headerListBytes } from '../../lib/http/h2/front-guard.js'
import { KEEP_ALIVE_TIMEOUT_MS } from '../../lib/http/h1/front.js'
import { MAX_HEADER_BYTES } from '../../lib/http/h1/headers.js'

describe('h2ServerSettings', function () {
  it('takes maxConcurrentStreams within 1..10,000 and the default for anything else', function () {
    for (const n of [1, 100, 128, 10_000]) assert.equal(h2ServerSettings({ maxConcurrentStreams: n }).settings?.maxConcurrentStreams, n)
    for (const bad of [0, -1, 10_001, 2 ** 32, 1.5, Number.NaN, Infinity, '100', null]) {
      assert.equal(h2ServerSettings({ maxConcurrentStreams: bad as number }).settings?.maxConcurrentStreams, DEFAULT_MAX_CONCURRENT_STREAMS, String(bad))
    }
  })

  it('sets the header list size to the HTTP/1.1 head limit, push off, and a bound on every node:http2 counter', function () {
    const o = h2ServerSettings()
    assert.equal(o.settings?.maxHeaderListSize, MAX_HEADER_BYTES)
    assert.equal(o.settings?.enablePush, false)
    for (const key of ['maxSessionInvalidFrames', 'maxSessionRejectedStreams', 'maxOutstandingPings', 'maxOutstandingSettings', 'maxSettings', 'maxSessionMemory', 'peerMaxConcurrentStreams', 'maxHeaderListPairs'] as const) {
      const v = o[key]
      assert.ok(typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 1000, `${key} = ${v}`)
    }
  })

  it('allows the header count plus the five request pseudo-headers, bounded', function () {
    assert.equal(h2ServerSettings({ maxHeaders: 100 }).maxHeaderListPairs, 105)
    assert.equal(h2ServerSettings({ maxHeaders: -5 }).maxHeaderListPairs, 105)
    assert.equal(h2ServerSettings({ maxHeaders: 1e9 }).maxHeaderListPairs, 105)
  })
})

describe('the guard defaults', function () {
  it('close an idle HTTP/2 connection after the HTTP/1.1 keep-alive timeout: one limit per thing', function () {
    assert.equal(DEFAULT_GUARD.idleTimeoutMs, KEEP_ALIVE_TIMEOUT_MS)
  })
})

describe('headerListBytes', function () {
  it('counts name + value + 32 per field', function () {
    assert.equal(headerListBytes([]), 0)
    assert.equal(headerListBytes([':path', '/']), 5 + 1 + 32)
    assert.equal(headerListBytes([':method', 'GET', 'x', '']), 7 + 3 + 32 + 1 + 0 + 32)
  })
})
