// Every relative link in README.md, CONTRIBUTING.md and docs/*.md points at a file that exists, and
// every #anchor at a heading of its target (issue 23).

import { expect } from 'chai'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const DOCS = [
  'README.md',
  'CONTRIBUTING.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
]

/** The text outside fenced code blocks, line by line (fenced lines blanked, so line numbers hold). */
function prose(text: string): string[] {
  let fence: string | null = null
  return text.split('\n').map((line) => {
    const open = /^\s*(`{3,}|~{3,})/.exec(line)
    if (fence === null && open) {
      fence = open[1]!
      return ''
    }
    if (fence !== null) {
      if (line.trim().startsWith(fence)) fence = null
      return ''
    }
    return line
  })
}

/** GitHub's anchor for a heading: lower-case, punctuation but '-' and '_' removed, spaces to '-'. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M} _-]/gu, '')
    .replace(/ /g, '-')
}

/** Every anchor a markdown file offers; a repeated heading gets -1, -2, ... as on GitHub. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  for (const line of prose(text)) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (!m) continue
    const base = slug(m[1]!)
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

interface Link {
  line: number
  target: string
}

/** Every `[text](target)` and `![alt](target)` outside code, inline code spans included as text. */
function links(text: string): Link[] {
  const out: Link[] = []
  prose(text).forEach((raw, i) => {
    const line = raw.replace(/`[^`]*`/g, 'code')
    for (const m of line.matchAll(/\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push({ line: i + 1, target: m[1]! })
  })
  return out
}

function problemsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8')
  const problems: string[] = []
  for (const { line, target } of links(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // http:, https:, mailto:
    const hash = target.indexOf('#')
    const path = hash === -1 ? target : target.slice(0, hash)
    const anchor = hash === -1 ? null : decodeURIComponent(target.slice(hash + 1))
    const resolved = path === '' ? join(ROOT, file) : join(dirname(join(ROOT, file)), decodeURIComponent(path))
    const where = `${file}:${line} ${target}`
    if (!existsSync(resolved)) {
      problems.push(`${where}: no file ${relative(ROOT, resolved)}`)
      continue
    }
    if (anchor === null) continue
    if (!resolved.endsWith('.md')) {
      problems.push(`${where}: an anchor into a file that is not markdown`)
      continue
    }
    if (!anchors(readFileSync(resolved, 'utf8')).has(anchor)) problems.push(`${where}: no heading #${anchor} in ${relative(ROOT, resolved)}`)
  }
  return problems
}

describe('documentation links', () => {
  it("makes GitHub's anchors from headings", () => {
    expect(slug('Failover: retries, ejection, health checks')).to.equal('failover-retries-ejection-health-checks')
    expect(slug('What `POST /reload` answers')).to.equal('what-post-reload-answers')
    expect(slug('When each one wins (`npm run bench:strategies`)')).to.equal('when-each-one-wins-npm-run-benchstrategies')
    expect(slug('snake_case and-dash')).to.equal('snake_case-and-dash')
    expect([...anchors('# A\n```sh\n# not a heading\n```\n## A\n## B #\n')]).to.deep.equal(['a', 'a-1', 'b'])
  })

  it('finds links outside code only', () => {
    const found = links('[a](x.md) `[b](y.md)` [`c`](z.md#q)\n```\n[d](w.md)\n```\n![e](p.png "t")').map((l) => l.target)
    expect(found).to.deep.equal(['x.md', 'z.md#q', 'p.png'])
  })

  it('covers the README, CONTRIBUTING.md and every docs page', () => {
    expect(DOCS).to.include.members(['README.md', 'CONTRIBUTING.md', 'docs/config.md', 'docs/http.md', 'docs/operations.md'])
    // The README links every page under docs/.
    const readme = links(readFileSync(join(ROOT, 'README.md'), 'utf8')).map((l) => l.target.split('#')[0])
    for (const doc of DOCS.filter((d) => d.startsWith('docs/'))) expect(readme, `README links ${doc}`).to.include(doc)
  })

  for (const file of DOCS) {
    it(`${file}: every relative link and anchor resolves`, () => {
      expect(problemsOf(file)).to.deep.equal([])
    })
  }
})
