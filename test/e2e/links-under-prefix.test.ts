import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualLauncher } from '../support/manual-launcher.js';
import { startPathFront, type PathFront } from '../support/path-front.js';
import { startService, type RunningService } from '../support/service.js';

/**
 * The 202's links and Location, followed as a client must (resolved against the URL it posted
 * to, RFC 3986), through a front that serves the API under /clauderun and strips it, as Google's
 * does for a function: they lead back under the prefix, though the API never sees it.
 */
describe('links under a path prefix', () => {
  const launcher = new ManualLauncher();
  let service: RunningService;
  let front: PathFront;
  beforeAll(async () => {
    service = await startService({}, undefined, { launcher });
    front = await startPathFront(service.url, '/clauderun');
  });
  afterAll(async () => {
    await front?.close();
    await service?.stop({ removeData: true });
  });

  for (const path of ['/api/conversation', '/api/conversation/', '/API/Conversation']) {
    it(`lead to the turn, its events and its cancel from POST ${path}`, async () => {
      const requestUrl = `${front.url}${path}`;
      const headers = { 'x-user-id': 'linker', 'content-type': 'application/json', prefer: 'respond-async' };
      const started = await fetch(requestUrl, { method: 'POST', headers, body: JSON.stringify({ message: 'hello' }) });
      expect(started.status).toBe(202);
      const body = (await started.json()) as { conversationId: string; turnId: string; links: Record<string, string> };
      const at = (link: string) => new URL(link, requestUrl).href;
      const turnUrl = `${front.url}/api/conversations/${body.conversationId}/turns/${body.turnId}`;
      expect(at(started.headers.get('location') ?? '')).toBe(turnUrl);
      expect(at(body.links.turn ?? '')).toBe(turnUrl);
      expect(at(body.links.events ?? '')).toBe(`${turnUrl}/events`);
      expect(at(body.links.cancel ?? '')).toBe(`${turnUrl}/cancel`);
      expect(at(body.links.conversation ?? '')).toBe(`${front.url}/api/conversations/${body.conversationId}`);

      const user = { 'x-user-id': 'linker' };
      expect(await (await fetch(at(body.links.turn ?? ''), { headers: user })).json()).toMatchObject({ turnId: body.turnId });
      expect(await (await fetch(at(body.links.conversation ?? ''), { headers: user })).json()).toMatchObject({ conversationId: body.conversationId });
      const cancelled = await fetch(at(body.links.cancel ?? ''), { method: 'POST', headers: user });
      expect(await cancelled.json()).toMatchObject({ status: 'cancelled' });
      const events = await fetch(at(body.links.events ?? ''), { headers: user });
      expect(events.headers.get('content-type')).toMatch(/^text\/event-stream/);
      expect(await events.text()).toMatch(/event: result/);
      expect(front.outside).toEqual([]);
    });
  }

  it('are relative to the path of an absolute-form request target too, whatever host it names', async () => {
    // RFC 9112 section 3.2.2: a client may send the whole URL as the target; only its path counts.
    const answer = await new Promise<{ status: number; location: string | undefined; links: Record<string, string> }>((resolve, reject) => {
      const request = http.request(
        {
          host: '127.0.0.1',
          port: service.port,
          method: 'POST',
          path: 'http://evil.example/api/conversation',
          headers: { 'x-user-id': 'absolute', 'content-type': 'application/json', prefer: 'respond-async' },
        },
        (response) => {
          let text = '';
          response.on('data', (chunk: Buffer) => (text += chunk.toString()));
          response.on('end', () =>
            resolve({
              status: response.statusCode ?? 0,
              location: response.headers.location,
              links: (JSON.parse(text) as { links: Record<string, string> }).links,
            }),
          );
        },
      );
      request.on('error', reject);
      request.end(JSON.stringify({ message: 'hello' }));
    });
    expect(answer.status).toBe(202);
    expect(answer.location).toMatch(/^conversations\/[^/]+\/turns\/[^/]+$/);
    expect(answer.links.conversation).toMatch(/^conversations\/[^/]+$/);
    launcher.last().end({ kind: 'cancelled' });
  });
});
