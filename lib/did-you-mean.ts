// "Did you mean" for a misspelt config key or strategy name: the closest known word by edit
// distance (Levenshtein), offered only when it is close enough to be a typo rather than a guess.

/** Levenshtein distance (insert, delete, substitute), two rows of memory; inputs are config words. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = row
  }
  return prev[b.length]!
}

/** Longest word compared: a config key is short, and a hostile one must not cost quadratic time. */
const MAX_WORD = 64

/**
 * The known word closest to `word`, when at most a third of its letters (at least one) differ
 * (`conect` -> `connect`, `stratgy` -> `strategy`), else undefined. Case is ignored.
 */
export function closestWord(word: string, known: Iterable<string>): string | undefined {
  if (word.length > MAX_WORD) return undefined
  const limit = Math.max(1, Math.floor(word.length / 3))
  let best: string | undefined
  let bestDistance = limit + 1
  for (const k of known) {
    if (k.length > MAX_WORD) continue
    const d = editDistance(word.toLowerCase(), k.toLowerCase())
    if (d < bestDistance) {
      best = k
      bestDistance = d
    }
  }
  return best
}

/** ` (did you mean "x"?)`, or nothing when no known word is close. */
export function didYouMean(word: string, known: Iterable<string>): string {
  const close = closestWord(word, known)
  return close === undefined ? '' : ` (did you mean "${close}"?)`
}
