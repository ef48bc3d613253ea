// Config files written to hurt (attack-check on issue 24 item 5): each must be refused with exit 2's
// ConfigError naming the field, promptly, never with a stack (a RangeError) or minutes of CPU.

import { expect } from 'chai'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { loadConfig } from '../../lib/config.js'
import { ConfigError } from '../../lib/errors.js'

const BASE = 'listen: 127.0.0.1:0\nzookeeper:\n  connect: 127.0.0.1:2181\nservices:\n  - name: a\n    path: /services/a\n'

describe('config: hostile files', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'zp-hostile-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  async function problemsOf(name: string, text: string): Promise<string[]> {
    const file = path.join(dir, name)
    writeFileSync(file, text)
    try {
      await loadConfig(file)
    } catch (err) {
      expect(err, String((err as Error).stack)).to.be.instanceOf(ConfigError)
      return [...(err as ConfigError).problems]
    }
    throw new Error('expected the config to be refused')
  }

  describe('many keys in one mapping (the parser compared each key with every earlier one)', () => {
    // 100,000 keys took over a minute before (quadratic); linear now, well inside what the 16 MB
    // cap lets in. No time is asserted: the mocha timeout is the bound.
    for (const [where, indent] of [
      ['at the top level', ''],
      ['inside a service', '    '],
    ] as const) {
      it(`${where}: 100,000 unknown keys are refused, each named`, async () => {
        const keys = Array.from({ length: 100_000 }, (_, i) => `${indent}zz${i}: 1\n`).join('')
        const problems = await problemsOf(`many-${indent.length}.yaml`, BASE + keys)
        expect(problems.length).to.equal(100_000)
        expect(problems[0]).to.match(indent === '' ? /^zz0: unknown key/ : /^services\[0\]\.zz0: unknown key/)
      })
    }

    for (const [what, dup] of [
      ['a plain key', 'listen: 127.0.0.1:1\n'],
      ['a quoted spelling of it', '"listen": 127.0.0.1:1\n'],
      ['a key of a service', '    path: /services/b\n'],
    ] as const) {
      it(`a key written twice (${what}) is still refused, with its line`, async () => {
        const problems = await problemsOf('dup.yaml', BASE + dup)
        expect(problems).to.have.length(1)
        const lines = problems[0]!.split('\n')
        expect(lines[0]).to.match(/^\(file\): .* is not valid YAML: Map keys must be unique: "(listen|path)" is written twice at line 7, column \d+:$/)
        expect(lines.slice(1)).to.deep.equal([`  ${dup.trimEnd()}`, `  ${' '.repeat(dup.length - dup.trimStart().length)}${'^'.repeat(dup.trim().split(':')[0]!.length)}`])
      })
    }

    it('equal keys of different types are different keys, as the parser has them (1 and "1")', async () => {
      const file = path.join(dir, 'types.yaml')
      writeFileSync(file, BASE + '    weights:\n      1: 1\n      "1": 2\n')
      expect((await loadConfig(file)).services[0]!.weights).to.deep.equal({ 1: 2 })
    })
  })
})

describe('config: nesting', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'zp-deep-'))
    // A user strategy module: its options are free-form, so the schema lets any nesting through.
    writeFileSync(path.join(dir, 'first.mjs'), 'export default function create() { return { pick: (c) => c[0] } }\n')
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  const nested = (depth: number, open: string, close: string, leaf: string): string => open.repeat(depth) + leaf + close.repeat(depth)

  // Lists, mappings and a mix; from just past the bound to far past what the stack holds.
  for (const depth of [33, 1_000, 100_000]) {
    for (const [shape, open, close] of [
      ['lists', '[', ']'],
      ['mappings', '{"k":', '}'],
    ] as const) {
      it(`${depth} nested ${shape} in a module strategy's options are refused, naming where`, async () => {
        const file = path.join(dir, `deep-${depth}-${shape}.json`)
        writeFileSync(file, `{"services":[{"name":"a","path":"/services/a","strategy":{"module":"./first.mjs","x":${nested(depth, open, close, '1')}}}]}`)
        try {
          await loadConfig(file)
        } catch (err) {
          expect(err, String((err as Error).stack)).to.be.instanceOf(ConfigError)
          expect((err as ConfigError).problems).to.have.length(1)
          expect((err as ConfigError).problems[0]).to.match(/^services\[0\]\.strategy\.x(\[0\]|\.k)+: nested deeper than 32 levels$/)
          return
        }
        throw new Error('expected the config to be refused')
      })
    }
  }

  it('options nested within the bound still load', async () => {
    const file = path.join(dir, 'ok.json')
    writeFileSync(file, `{"services":[{"name":"a","path":"/services/a","strategy":{"module":"./first.mjs","x":${nested(20, '[', ']', '1')}}}]}`)
    expect((await loadConfig(file)).services[0]!.strategy.module).to.be.a('string')
  })
})

describe('config: numbers JSON cannot write', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'zp-numbers-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  // Each was reported as "got null" (JSON.stringify's word for them), naming a value nobody wrote.
  for (const [written, shown] of [
    ['1e309', 'Infinity (too large)'],
    ['-1e309', '-Infinity (too large)'],
    ['.inf', 'Infinity (too large)'],
    ['-.inf', '-Infinity (too large)'],
    ['.nan', 'NaN (not a number)'],
  ] as const) {
    it(`timeoutMs: ${written} is refused as ${shown}`, async () => {
      const file = path.join(dir, 'n.yaml')
      writeFileSync(file, `${BASE}    timeoutMs: ${written}\n`)
      const problems = await loadConfig(file).then(
        () => [],
        (err: unknown) => (err as ConfigError).problems,
      )
      expect(problems).to.deep.equal([`services[0].timeoutMs: expected milliseconds as a number, got ${shown}`])
    })
  }
})

describe('config: "did you mean" over many mappings', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'zp-guesses-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  // The guesses were bounded per mapping (100), not per file: 2,000 services of 100 unknown
  // 60-letter keys cost 20 s. Now the first 100 unknown keys of the file get a guess, the rest are named.
  it('1,000 services of 100 unknown keys each: every key named, at most 100 guesses in the file', async () => {
    // `timeoutM` is one letter from timeoutMs, so each service has a key a guess would be offered for.
    const keys = Array.from({ length: 99 }, (_, i) => `    zz${i}${'y'.repeat(56)}: 1\n`).join('') + '    timeoutM: 1\n'
    const services = Array.from({ length: 1_000 }, (_, j) => `  - name: s${j}\n    path: /s/${j}\n${keys}`).join('')
    const file = path.join(dir, 'many.yaml')
    writeFileSync(file, `listen: 127.0.0.1:0\nservices:\n${services}`)
    const problems = await loadConfig(file).then(
      () => [],
      (err: unknown) => (err as ConfigError).problems,
    )
    expect(problems.length).to.equal(100_000)
    const guessed = problems.filter((p) => p.endsWith('unknown key (did you mean "timeoutMs"?)'))
    expect(guessed.length).to.be.within(1, 100)
    expect(problems.filter((p) => /^services\[\d+\]\.(zz\d+y+|timeoutM): unknown key/.test(p)).length).to.equal(100_000)
  })
})
