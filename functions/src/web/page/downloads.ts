/**
 * Saves bytes the page fetched as a file. The API wants credentials in a header, which a plain
 * link cannot send: the page fetches, then hands the browser a blob: URL to save. The URL is
 * revoked once the click has started the download, so the bytes are not kept for the tab's life.
 */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  try {
    link.click();
  } finally {
    link.remove();
    // The download has its own reference to the blob by now; a tick later is safe everywhere.
    setTimeout(() => URL.revokeObjectURL(url), 0);
  }
}
