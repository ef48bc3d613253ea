// A dependency-free SVG bar chart of throughput ratios, one group per scenario.

export interface Group {
  readonly label: string
  readonly bars: readonly { readonly name: string; readonly value: number }[]
}

const COLOURS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#b07aa1', '#9c755f']

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;')
}

export function ratioChart(groups: readonly Group[]): string {
  const names = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.name)))]
  const max = Math.max(1, ...groups.flatMap((g) => g.bars.map((b) => b.value)))
  const barH = 14
  const groupH = names.length * barH + 30
  const left = 190
  const width = 760
  const scale = (width - left - 60) / max
  const height = groups.length * groupH + 40 + names.length * 16
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="18" font-size="13" font-weight="bold">req/s relative to the baseline (1.0 = the line)</text>`,
  ]
  groups.forEach((g, gi) => {
    const y0 = 30 + gi * groupH
    out.push(`<text x="10" y="${y0 + 12}" font-weight="bold">${esc(g.label)}</text>`)
    g.bars.forEach((b) => {
      const i = names.indexOf(b.name)
      const y = y0 + 18 + i * barH
      out.push(`<text x="${left - 6}" y="${y + 10}" text-anchor="end">${esc(b.name)}</text>`)
      out.push(`<rect x="${left}" y="${y}" width="${Math.max(1, b.value * scale).toFixed(1)}" height="${barH - 3}" fill="${COLOURS[i % COLOURS.length]}"/>`)
      out.push(`<text x="${left + b.value * scale + 4}" y="${y + 10}">${b.value.toFixed(2)}</text>`)
    })
    out.push(`<line x1="${left + scale}" x2="${left + scale}" y1="${y0 + 16}" y2="${y0 + groupH - 10}" stroke="#333" stroke-dasharray="3,2"/>`)
  })
  out.push('</svg>')
  return out.join('\n')
}
