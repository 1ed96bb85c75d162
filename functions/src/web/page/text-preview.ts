/** Files larger than this are offered for download only: a <pre> of megabytes would stall the page. */
export const MAX_PREVIEW_BYTES = 1_000_000;

/**
 * The bytes as text, or undefined when they are not text: not valid UTF-8 (fatal decoding throws
 * rather than inventing replacement characters), or with NUL bytes, which valid UTF-8 allows but
 * no text file has.
 */
export function asText(bytes: ArrayBuffer): string | undefined {
  if (bytes.byteLength > MAX_PREVIEW_BYTES) return undefined;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
  return text.includes('\u0000') ? undefined : text;
}
