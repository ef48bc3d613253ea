// Reading a file an operator named (a config, a certificate, a token): only a regular file, only up
// to a size that file could sensibly have, and never blocking. A FIFO at a certificate's path held
// every later reload waiting for a writer, and /dev/zero grew `check` to 6 GB.

import { Buffer } from 'node:buffer'
import { constants } from 'node:fs'
import { open } from 'node:fs/promises'
import { ConfigError } from './errors.js'
import { strictUtf8 } from './utf8.js'

/** Largest certificate, key or CA bundle read (the system CA bundle is about 200 KB). */
export const MAX_PEM_BYTES = 4 * 1024 * 1024
/** Largest config file read. */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024
/** Largest token or credentials file read. */
export const MAX_SECRET_BYTES = 64 * 1024

/**
 * The content of `file`, which must be a regular file of at most `maxBytes`. Opened non-blocking,
 * so that a FIFO or a device is refused (by fstat) rather than waited on. The message says why, to
 * follow "cannot read <file>: ".
 */
export async function readBoundedFile(file: string, maxBytes: number): Promise<Buffer> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK)
  try {
    const st = await handle.stat()
    if (!st.isFile()) throw new Error(st.isDirectory() ? 'EISDIR' : 'not a regular file')
    if (st.size > maxBytes) throw new Error(`larger than ${maxBytes} bytes`)
    const buf = Buffer.alloc(st.size)
    let at = 0
    while (at < st.size) {
      const { bytesRead } = await handle.read(buf, at, st.size - at, at)
      if (bytesRead === 0) break
      at += bytesRead
    }
    return at === st.size ? buf : buf.subarray(0, at)
  } finally {
    await handle.close()
  }
}

/** Why a read failed, in a word where there is one (ENOENT, EACCES), else the message. */
export function readFailure(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message
}

/**
 * `readBoundedFile` for a file a config field names: a failure is one ConfigError line in the one
 * wording every such file shares, `<field>: cannot read <file>: <why>`.
 */
export async function readFieldFile(field: string, file: string, maxBytes: number): Promise<Buffer> {
  try {
    return await readBoundedFile(file, maxBytes)
  } catch (err) {
    throw new ConfigError([`${field}: cannot read ${file}: ${readFailure(err)}`])
  }
}

/** `readFieldFile` as strict UTF-8 text: a byte that is not UTF-8 is `<field>: <file>: not UTF-8 at byte N (line L)`. */
export async function readFieldText(field: string, file: string, maxBytes: number): Promise<string> {
  const buf = await readFieldFile(field, file, maxBytes)
  try {
    return strictUtf8(buf)
  } catch (err) {
    throw new ConfigError([`${field}: ${file}: ${(err as Error).message}`])
  }
}
