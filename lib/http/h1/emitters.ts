// Listeners every emitter on the request path may need, in one place below their users (the
// front's request bodies, forward.ts's body taps, the dropped bytes of a closing connection).

/**
 * An 'error' listener every emitter on the request path gets when it is made, before anyone can
 * destroy it: whoever reads it adds its own and learns of the error that way; once nobody reads
 * it any more (the attempt that held it ended), an error it still emits must not end the process.
 */
export function neverUnhandled(e: { on(event: 'error', fn: (err: Error) => void): unknown }): void {
  e.on('error', ignore)
}

/** A listener that does nothing: for events whose content is dropped on purpose. */
export function ignore(): void {}
