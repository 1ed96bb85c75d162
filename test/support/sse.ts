export interface SseEvent {
  id: string | undefined;
  event: string;
  data: Record<string, unknown>;
}

/**
 * Reads a Server-Sent Events stream until the server closes it, or until `stopAfter` returns
 * true for an event (then the connection is dropped, as a client that goes away would).
 */
export async function readEvents(
  url: string,
  headers: Record<string, string>,
  stopAfter: (event: SseEvent) => boolean = () => false,
): Promise<{ status: number; contentType: string | null; events: SseEvent[] }> {
  const controller = new AbortController();
  const response = await fetch(url, { headers, signal: controller.signal });
  const events: SseEvent[] = [];
  if (response.body === null || !response.ok) return { status: response.status, contentType: response.headers.get('content-type'), events };
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const chunk of response.body) {
      buffer += decoder.decode(chunk, { stream: true });
      let boundary: number;
      while ((boundary = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        const fields = new Map<string, string>();
        for (const line of block.split('\n')) {
          if (line.startsWith(':') || !line.includes(':')) continue;
          const colon = line.indexOf(':');
          fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart());
        }
        if (!fields.has('data')) continue;
        const event = {
          id: fields.get('id'),
          event: fields.get('event') ?? 'message',
          data: JSON.parse(fields.get('data') ?? '{}') as Record<string, unknown>,
        };
        events.push(event);
        if (stopAfter(event)) {
          controller.abort();
          return { status: response.status, contentType: response.headers.get('content-type'), events };
        }
      }
    }
  } catch (error) {
    if (!controller.signal.aborted) throw error;
  }
  return { status: response.status, contentType: response.headers.get('content-type'), events };
}
