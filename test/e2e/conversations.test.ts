import { readdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { call, linkPath, prompt, useServiceWithFake, type RunningService } from '../support/service.js';
import { readEvents } from '../support/sse.js';
import { runnerPid, sandboxNameOf } from '../support/sandbox-processes.js';

const WAIT_A_MINUTE = 'node -e "setTimeout(() => {}, 60000)"';

/** Starts a turn without waiting for it (Prefer: respond-async). */
async function startAsync(service: RunningService, userId: string, body: Record<string, unknown>) {
  const answer = await prompt(service, userId, body, { prefer: 'respond-async' });
  expect(answer.status, JSON.stringify(answer.body)).toBe(202);
  return answer.body as { conversationId: string; turnId: string; status: string; links: { turn: string; events: string; cancel: string } };
}

async function waitForStatus(service: RunningService, userId: string, link: string, wanted: string[]) {
  for (let i = 0; i < 200; i++) {
    const turn = await call(service, 'GET', link, { userId });
    if (wanted.includes(String(turn.body.status))) return turn.body;
    await sleep(50);
  }
  throw new Error(`turn never reached ${wanted.join('/')}`);
}

describe('conversations as a product', () => {
  const running = useServiceWithFake({ CLAUDERUN_MAX_STATE_BYTES: '300000' });

  it("lists only the caller's conversations, newest first, a page at a time", async () => {
    const user = `lister-${Date.now()}`;
    const ids: string[] = [];
    for (const message of ['first', 'second', 'third']) {
      ids.push(String((await prompt(running.service, user, { message })).body.conversationId));
    }
    await prompt(running.service, 'someone-else', { message: 'not yours' });
    const page1 = await call(running.service, 'GET', '/api/conversations?limit=2', { userId: user });
    expect(page1.status).toBe(200);
    const first = page1.body.conversations as Array<{ conversationId: string; title: string }>;
    expect(first.map((c) => c.conversationId)).toEqual([ids[2], ids[1]]);
    expect(first[0]?.title).toBe('third');
    const page2 = await call(running.service, 'GET', `/api/conversations?limit=2&cursor=${String(page1.body.nextCursor)}`, { userId: user });
    expect((page2.body.conversations as Array<{ conversationId: string }>).map((c) => c.conversationId)).toEqual([ids[0]]);
    expect(page2.body.nextCursor).toBeNull();
    const bad = await call(running.service, 'GET', '/api/conversations?limit=1000', { userId: user });
    expect(bad.status).toBe(400);
  });

  it('creates an empty conversation (201, Location), which lists and opens with no turn, and takes a first prompt; another user cannot use it', async () => {
    const user = `creator-${Date.now()}`;
    const created = await fetch(`${running.service.url}/api/conversations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': user },
      body: JSON.stringify({ title: '  Refactor   the parser ' }),
    });
    expect(created.status).toBe(201);
    const { conversationId } = (await created.json()) as { conversationId: string };
    expect(new URL(created.headers.get('location') ?? '', created.url).pathname).toBe(`/api/conversations/${conversationId}`);
    const opened = await call(running.service, 'GET', `/api/conversations/${conversationId}`, { userId: user });
    expect(opened.body).toMatchObject({ conversationId, title: 'Refactor the parser', turns: [] });
    const listed = await call(running.service, 'GET', '/api/conversations', { userId: user });
    expect((listed.body.conversations as Array<{ conversationId: string }>).map((c) => c.conversationId)).toEqual([conversationId]);
    const untitled = await call(running.service, 'POST', '/api/conversations', { userId: user, body: {} });
    expect(untitled.status).toBe(201);
    expect((await call(running.service, 'GET', `/api/conversations/${String(untitled.body.conversationId)}`, { userId: user })).body.title).toBe(
      'New conversation',
    );

    const answer = await prompt(running.service, user, { message: 'first words', conversationId });
    expect(answer.body).toMatchObject({ conversationId, status: 'succeeded', text: 'echo: first words' });
    // A title given is kept; an untitled conversation is named by its first prompt, and only by it.
    expect((await call(running.service, 'GET', `/api/conversations/${conversationId}`, { userId: user })).body.title).toBe('Refactor the parser');
    const untitledId = String(untitled.body.conversationId);
    await prompt(running.service, user, { message: '  name   me ', conversationId: untitledId });
    await prompt(running.service, user, { message: 'not me', conversationId: untitledId });
    expect((await call(running.service, 'GET', `/api/conversations/${untitledId}`, { userId: user })).body.title).toBe('name me');
    expect((await prompt(running.service, 'intruder', { message: 'mine now', conversationId })).status).toBe(404);
    for (const [body, rule] of [
      [{ title: 5 }, 'title must be a string'],
      [{ title: 'x'.repeat(201) }, 'title must be at most 200 characters'],
      [{ name: 'x' }, 'name'],
    ] as const) {
      const refused = await call(running.service, 'POST', '/api/conversations', { userId: user, body });
      expect(refused.status).toBe(400);
      expect(JSON.stringify(refused.body)).toContain(rule);
    }
  });

  it('shows one conversation with its turns and one turn; another user gets 404 for both', async () => {
    const opened = await prompt(running.service, 'viewer', { message: 'look at me' });
    const { conversationId, turnId } = opened.body as { conversationId: string; turnId: string };
    const conversation = await call(running.service, 'GET', `/api/conversations/${conversationId}`, { userId: 'viewer' });
    expect(conversation.status).toBe(200);
    expect(conversation.body).toMatchObject({
      conversationId,
      title: 'look at me',
      turns: [{ turnId, prompt: 'look at me', status: 'succeeded', text: 'echo: look at me' }],
    });
    const turn = await call(running.service, 'GET', `/api/conversations/${conversationId}/turns/${turnId}`, { userId: 'viewer' });
    expect(turn.body).toMatchObject({ turnId, status: 'succeeded' });
    for (const link of [`/api/conversations/${conversationId}`, `/api/conversations/${conversationId}/turns/${turnId}`]) {
      const stranger = await call(running.service, 'GET', link, { userId: 'stranger' });
      expect(stranger.status).toBe(404);
      expect(stranger.body).toMatchObject({ error: { code: 'not_found' } });
    }
  });

  it('deletes a conversation with its stored state; it is gone for good', async () => {
    const opened = await prompt(running.service, 'deleter', { message: 'write: /workspace/x.txt something' });
    const conversationId = String(opened.body.conversationId);
    const stateDir = path.join(running.service.dataDir, 'blobs', 'conversations', conversationId);
    // The state, its manifest, and the workspace's export once it is downloaded: all go with the conversation.
    expect((await fetch(`${running.service.url}/api/conversations/${conversationId}/archive`, { headers: { 'x-user-id': 'deleter' } })).status).toBe(
      200,
    );
    expect(
      readdirSync(stateDir)
        .map((name) => name.replace(/^state-[^.]+/, 'state'))
        .sort(),
    ).toEqual(['state.tar.gz', 'state.tar.gz.manifest.json', 'state.tar.gz.workspace.tar.gz']);
    expect((await call(running.service, 'DELETE', `/api/conversations/${conversationId}`, { userId: 'stranger' })).status).toBe(404);
    expect((await call(running.service, 'DELETE', `/api/conversations/${conversationId}`, { userId: 'deleter' })).status).toBe(204);
    expect(readdirSync(stateDir)).toEqual([]);
    expect((await call(running.service, 'GET', `/api/conversations/${conversationId}`, { userId: 'deleter' })).status).toBe(404);
    expect((await prompt(running.service, 'deleter', { message: 'again', conversationId })).status).toBe(404);
  });

  it('runs a turn asynchronously and streams its progress, replayable and resumable', async () => {
    const started = await startAsync(running.service, 'watcher', { message: 'bash: echo progress-marker' });
    // Relative to the request's URL (RFC 3986), so that it holds under a path prefix too.
    expect(started.links.events).toBe(`conversations/${started.conversationId}/turns/${started.turnId}/events`);
    const url = `${running.service.url}${linkPath(started.links.events)}`;
    const live = await readEvents(url, { 'x-user-id': 'watcher' });
    expect(live.status).toBe(200);
    expect(live.contentType).toContain('text/event-stream');
    const kinds = live.events.map((e) => e.event);
    expect(kinds).toEqual(expect.arrayContaining(['status', 'tool_use', 'tool_result', 'text', 'result']));
    expect(kinds.at(-1)).toBe('result');
    expect(live.events.find((e) => e.event === 'tool_use')?.data).toMatchObject({ data: { name: 'Bash', summary: 'echo progress-marker' } });
    expect(live.events.find((e) => e.event === 'tool_result')?.data).toMatchObject({ data: { summary: expect.stringContaining('progress-marker') } });
    expect(live.events.at(-1)?.data).toMatchObject({ data: { status: 'succeeded', turnId: started.turnId } });
    const ids = live.events.map((e) => Number(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));

    // A finished turn replays everything, then closes.
    const replay = await readEvents(url, { 'x-user-id': 'watcher' });
    expect(replay.events.map((e) => e.id)).toEqual(live.events.map((e) => e.id));
    // Resuming after event 2 gives exactly the rest; resuming after the result ends at once.
    const resumed = await readEvents(url, { 'x-user-id': 'watcher', 'last-event-id': '2' });
    expect(resumed.events.map((e) => e.id)).toEqual(live.events.slice(2).map((e) => e.id));
    const done = await readEvents(url, { 'x-user-id': 'watcher', 'last-event-id': String(ids.at(-1)) });
    expect(done.events).toEqual([]);
    expect((await readEvents(url, { 'x-user-id': 'stranger' })).status).toBe(404);
  });

  it('refuses a second prompt while one runs (409 naming it), cancels within 2 s and keeps the previous state', async () => {
    const first = await prompt(running.service, 'canceller', { message: 'write: /workspace/kept.txt kept-content' });
    expect(first.status).toBe(200);
    const conversationId = String(first.body.conversationId);
    const slow = await startAsync(running.service, 'canceller', { message: `bash: rm /workspace/kept.txt; ${WAIT_A_MINUTE}`, conversationId });
    await readEvents(`${running.service.url}${linkPath(slow.links.events)}`, { 'x-user-id': 'canceller' }, (e) => e.event === 'tool_use');

    const second = await prompt(running.service, 'canceller', { message: 'me too', conversationId });
    expect(second.status).toBe(409);
    expect(second.body).toMatchObject({ error: { code: 'conflict', details: { activeTurnId: slow.turnId } } });

    const before = Date.now();
    const cancelled = await call(running.service, 'POST', linkPath(slow.links.cancel), { userId: 'canceller' });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', reason: expect.stringContaining('cancelled') });
    expect(Date.now() - before).toBeLessThan(2000);
    expect((await call(running.service, 'POST', linkPath(slow.links.cancel), { userId: 'canceller' })).status).toBe(409);

    const after = await prompt(running.service, 'canceller', { message: 'bash: cat /workspace/kept.txt', conversationId });
    expect(after.status).toBe(200);
    expect(after.body.text).toContain('kept-content');
  });

  it('returns the same turn for a retried POST with the same Idempotency-Key', async () => {
    const headers = { 'idempotency-key': `key-${Date.now()}` };
    const [a, b] = await Promise.all([
      prompt(running.service, 'retrier', { message: 'only once' }, headers),
      prompt(running.service, 'retrier', { message: 'only once' }, headers),
    ]);
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(b.body.turnId).toBe(a.body.turnId);
    const again = await prompt(running.service, 'retrier', { message: 'only once' }, headers);
    expect(again.body.turnId).toBe(a.body.turnId);
    const list = await call(running.service, 'GET', '/api/conversations', { userId: 'retrier' });
    expect(list.body.conversations).toHaveLength(1);
  });

  it('ends a turn whose state is over the limit with a clear error, keeping the previous state', async () => {
    const first = await prompt(running.service, 'hoarder', { message: 'write: /workspace/small.txt small-content' });
    expect(first.status).toBe(200);
    const conversationId = String(first.body.conversationId);
    const big = await prompt(running.service, 'hoarder', { message: 'bash: head -c 2000000 /dev/urandom > /workspace/big.bin', conversationId });
    expect(big.status).toBe(502);
    expect(big.body).toMatchObject({
      error: { code: 'sandbox_failed', message: expect.stringMatching(/over the limit of 300000.*previous state is kept/) },
    });
    const after = await prompt(running.service, 'hoarder', { message: 'bash: cat /workspace/small.txt; ls /workspace', conversationId });
    expect(after.status).toBe(200);
    expect(after.body.text).toContain('small-content');
    expect(after.body.text).not.toContain('big.bin');
  });

  it('ends a turn whose runner is killed without a word as failed, with the reason', async () => {
    const started = await startAsync(running.service, 'victim', { message: `bash: ${WAIT_A_MINUTE}` });
    await readEvents(`${running.service.url}${linkPath(started.links.events)}`, { 'x-user-id': 'victim' }, (e) => e.event === 'tool_use');
    const runner = runnerPid(await sandboxNameOf(running.service, 'victim', started.conversationId, started.turnId));
    expect(runner).toBeDefined();
    process.kill(runner!, 'SIGKILL');
    const turn = await waitForStatus(running.service, 'victim', linkPath(started.links.turn), ['failed', 'succeeded', 'cancelled', 'timed_out']);
    expect(turn).toMatchObject({ status: 'failed', reason: expect.stringMatching(/without reporting a result/) });
  });
});
