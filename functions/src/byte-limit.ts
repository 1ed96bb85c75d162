import { Transform, type TransformCallback } from 'node:stream';

/**
 * A pass-through stream that fails with `tooLarge()` once more than `maxBytes` have gone
 * through it: what is read from an untrusted source (a sandbox's upload, a state being unpacked)
 * is counted as it flows, never buffered or written past the limit. `bytes()` says how many passed.
 */
export function byteLimit(maxBytes: number, tooLarge: () => Error): { stream: Transform; bytes: () => number } {
  let seen = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback) {
      seen += chunk.length;
      done(seen > maxBytes ? tooLarge() : null, chunk);
    },
  });
  return { stream, bytes: () => seen };
}
