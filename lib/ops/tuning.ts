// Process-level tuning that has to be in place before Node starts.

import process from 'node:process'
import type { Logger } from '../log.js'

/** True on Linux with glibc (not musl), where MALLOC_TRIM_THRESHOLD_ means something. */
export function onGlibc(): boolean {
  if (process.platform !== 'linux') return false
  const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header
  return header?.glibcVersionRuntime !== undefined
}

/** What README "Tuning" recommends on glibc; the Docker image and `npm run demo` set it. */
export const MALLOC_TUNING = { MALLOC_TRIM_THRESHOLD_: '33554432' } as const

/**
 * glibc's malloc gives freed heap back to the kernel as soon as 128 KiB lie free at its top.
 * Node copies every piece of a body it parses into a fresh Buffer of up to 64 KiB, so a proxy
 * streaming large bodies through the parser (request bodies, chunked answers; answers with a
 * Content-Length bypass it) keeps shrinking and regrowing its heap and page-faults on every read:
 * measured 1.3-4x the CPU per 1 MiB body. The setting has to be in the environment before the
 * process starts, so all we can do here is say so.
 */
export function adviseMalloc(logger: Logger): void {
  if (process.env.MALLOC_TRIM_THRESHOLD_ !== undefined || !onGlibc()) return
  logger.info({ set: `MALLOC_TRIM_THRESHOLD_=${MALLOC_TUNING.MALLOC_TRIM_THRESHOLD_}` }, 'glibc trims its heap eagerly: large request bodies and chunked answers cost up to 4x the CPU (README, Tuning)')
}
