import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gunzipSync, gzipSync } from 'node:zlib';
import { fillPath, PUBLIC_ROUTES } from '../../functions/src/contract/routes.js';
import { runnerPaths } from '../../functions/src/contract/runner-paths.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { readEvents } from '../support/sse.js';
import { call, prompt, startService, type RunningService } from '../support/service.js';
import { TAR_END, tarEntry } from '../support/tar-bytes.js';

/** The turn protocol's edge cases, with the test in the runner's place. */
describe('the runner protocol', () => {
  const launcher = new ManualLauncher();
  let service: RunningService;
  beforeAll(async () => {
    service = await startService({}, undefined, { launcher });
  });
  afterAll(async () => service?.stop({ removeData: true }));

  /** The runner's listener: a local sandbox's bridge leads there, not to the public port. */
  const runnerSide = () => ({ url: service.internalUrl });
  const asRunner = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
  const result = (text: string) => ({ outcome: 'succeeded', text, sessionId: '00000000-0000-4000-8000-000000000001', stateSaved: false });

  async function startTurn(userId: string) {
    const started = await prompt(service, userId, { message: 'hello' }, { prefer: 'respond-async' });
    expect(started.status).toBe(202);
    const sandbox = launcher.last();
    const turn = await call(runnerSide(), 'GET', runnerPaths.turn(sandbox.spec.turnId), asRunner(sandbox.spec.token));
    expect(turn.status).toBe(200);
    expect(turn.body).toMatchObject({ turnId: sandbox.spec.turnId, prompt: 'hello', sessionId: null, hasState: false });
    return {
      sandbox,
      link: fillPath(PUBLIC_ROUTES.turn, { conversationId: String(started.body.conversationId), turnId: sandbox.spec.turnId }),
      userId,
    };
  }
  const turnOf = async (t: { link: string; userId: string }) => (await call(service, 'GET', t.link, { userId: t.userId })).body;

  const resultEvents = async (t: { link: string; userId: string }) =>
    (await readEvents(`${service.url}${t.link}/events`, { 'x-user-id': t.userId })).events.filter((e) => e.event === 'result');

  it('takes the first result; the same result again gets the turn as it ended, another is refused with 409 and changes nothing', async () => {
    const t = await startTurn('dup');
    const path = runnerPaths.result(t.sandbox.spec.turnId);
    const first = await call(runnerSide(), 'POST', path, { body: result('first'), ...asRunner(t.sandbox.spec.token) });
    expect(first).toEqual({ status: 200, body: { status: 'succeeded' } });
    // A runner whose answer was lost on the way posts the same result again.
    const replayed = await call(runnerSide(), 'POST', path, { body: result('first'), ...asRunner(t.sandbox.spec.token) });
    expect(replayed).toEqual({ status: 200, body: { status: 'succeeded' } });
    const other = await call(runnerSide(), 'POST', path, { body: result('second'), ...asRunner(t.sandbox.spec.token) });
    expect(other.status).toBe(409);
    expect(other.body).toMatchObject({ error: { code: 'conflict', details: { status: 'succeeded' } } });
    const failedInstead = await call(runnerSide(), 'POST', path, { body: { outcome: 'failed', reason: 'first' }, ...asRunner(t.sandbox.spec.token) });
    expect(failedInstead.status).toBe(409);
    expect(await turnOf(t)).toMatchObject({ status: 'succeeded', text: 'first' });
    expect(await resultEvents(t)).toHaveLength(1);
  });

  it('answers two posts of one result at the same moment alike, and ends the turn once', async () => {
    const t = await startTurn('racing');
    const path = runnerPaths.result(t.sandbox.spec.turnId);
    const failed = { outcome: 'failed', reason: 'the agent gave up', text: 'partial' };
    const answers = await Promise.all([1, 2, 3].map(() => call(runnerSide(), 'POST', path, { body: failed, ...asRunner(t.sandbox.spec.token) })));
    expect(answers).toEqual(Array(3).fill({ status: 200, body: { status: 'failed' } }));
    expect(await turnOf(t)).toMatchObject({ status: 'failed', reason: 'the agent gave up', text: 'partial' });
    expect(await resultEvents(t)).toHaveLength(1);
  });

  it('answers the same claim of a state that never arrived again as it ended the turn: failed', async () => {
    const t = await startTurn('liar-again');
    const claim = { ...result('saved?'), stateSaved: true };
    const path = runnerPaths.result(t.sandbox.spec.turnId);
    for (let i = 0; i < 2; i++) {
      expect(await call(runnerSide(), 'POST', path, { body: claim, ...asRunner(t.sandbox.spec.token) })).toEqual({
        status: 200,
        body: { status: 'failed' },
      });
    }
  });

  it('refuses with 409 a result that arrives after the turn timed out, and the turn stays as it ended', async () => {
    const t = await startTurn('late');
    t.sandbox.end({ kind: 'timed_out' });
    await expect.poll(async () => (await turnOf(t)).status).toBe('timed_out');
    const late = await call(runnerSide(), 'POST', runnerPaths.result(t.sandbox.spec.turnId), {
      body: result('too late'),
      ...asRunner(t.sandbox.spec.token),
    });
    expect(late.status).toBe(409);
    expect(late.body).toMatchObject({ error: { code: 'conflict', details: { status: 'timed_out' } } });
    expect(await turnOf(t)).toMatchObject({ status: 'timed_out', text: null });
    expect(await resultEvents(t)).toHaveLength(1);
  });

  it('takes the same state upload twice: a replay replaces the archive with itself', async () => {
    const t = await startTurn('uploader');
    const path = runnerPaths.state(t.sandbox.spec.turnId);
    const archive = gzipSync(Buffer.concat([tarEntry('workspace/note.txt', Buffer.from('a state as the runner writes one')), TAR_END]));
    for (let i = 0; i < 2; i++) {
      const put = await fetch(`${service.internalUrl}${path}`, {
        method: 'PUT',
        body: archive,
        headers: { 'content-type': 'application/gzip', authorization: `Bearer ${t.sandbox.spec.token}` },
      });
      expect(put.status).toBe(204);
    }
    const got = await fetch(`${service.internalUrl}${path}`, { headers: { authorization: `Bearer ${t.sandbox.spec.token}` } });
    // The state a turn reads is its conversation's previous one (none yet), not the one it uploads.
    expect(got.status).toBe(204);
    expect(
      (
        await call(runnerSide(), 'POST', runnerPaths.result(t.sandbox.spec.turnId), {
          body: { ...result('saved'), stateSaved: true },
          ...asRunner(t.sandbox.spec.token),
        })
      ).body,
    ).toEqual({ status: 'succeeded' });
  });

  it('keeps the committed state when a late copy of its upload arrives after the turn ended', async () => {
    const t = await startTurn('late-copy');
    const path = runnerPaths.state(t.sandbox.spec.turnId);
    const archive = gzipSync(Buffer.concat([tarEntry('workspace/note.txt', Buffer.from('the state the turn committed')), TAR_END]));
    const headers = { 'content-type': 'application/gzip', authorization: `Bearer ${t.sandbox.spec.token}` };
    // A copy of the upload that is still on its way (a retry whose first try got through after all).
    let sendRest: () => void = () => {};
    const rest = new Promise<void>((resolve) => (sendRest = resolve));
    const slowBody = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(archive.subarray(0, 10));
        await rest;
        controller.enqueue(archive.subarray(10));
        controller.close();
      },
    });
    const late = fetch(`${service.internalUrl}${path}`, { method: 'PUT', body: slowBody, headers, duplex: 'half' } as RequestInit);
    expect((await fetch(`${service.internalUrl}${path}`, { method: 'PUT', body: archive, headers })).status).toBe(204);
    const ended = await call(runnerSide(), 'POST', runnerPaths.result(t.sandbox.spec.turnId), {
      body: { ...result('saved'), stateSaved: true },
      ...asRunner(t.sandbox.spec.token),
    });
    expect(ended.body).toEqual({ status: 'succeeded' });
    sendRest();
    expect((await late).status).toBe(401);
    // The next turn of the conversation gets the committed state back.
    const conversationId = t.link.split('/')[3];
    const next = await prompt(service, 'late-copy', { message: 'again', conversationId }, { prefer: 'respond-async' });
    expect(next.status).toBe(202);
    const sandbox = launcher.last();
    await call(runnerSide(), 'GET', runnerPaths.turn(sandbox.spec.turnId), asRunner(sandbox.spec.token));
    const state = await fetch(`${service.internalUrl}${runnerPaths.state(sandbox.spec.turnId)}`, {
      headers: { authorization: `Bearer ${sandbox.spec.token}` },
    });
    expect(state.status).toBe(200);
    // The API stores a state as it read it, written anew: the same file, in an archive of its own making.
    const served = gunzipSync(Buffer.from(await state.arrayBuffer()));
    expect(served.includes(Buffer.from('workspace/note.txt'))).toBe(true);
    expect(served.includes(Buffer.from('the state the turn committed'))).toBe(true);
    sandbox.end({ kind: 'cancelled' });
  });

  it("refuses a result posted with another turn's token, and neither turn changes", async () => {
    const a = await startTurn('owner-a');
    const b = await startTurn('owner-b');
    const forged = await call(runnerSide(), 'POST', runnerPaths.result(a.sandbox.spec.turnId), {
      body: result('forged'),
      ...asRunner(b.sandbox.spec.token),
    });
    expect(forged.status).toBe(401);
    expect(await turnOf(a)).toMatchObject({ status: 'running' });
    expect(await turnOf(b)).toMatchObject({ status: 'running' });
    a.sandbox.end({ kind: 'exited', exitCode: 0, signal: null, outOfMemory: false });
    b.sandbox.end({ kind: 'exited', exitCode: 0, signal: null, outOfMemory: false });
  });

  it('voids the token once the turn is final: no more model calls, no more reads', async () => {
    const t = await startTurn('voided');
    await call(runnerSide(), 'POST', runnerPaths.result(t.sandbox.spec.turnId), { body: result('done'), ...asRunner(t.sandbox.spec.token) });
    const model = await call(runnerSide(), 'POST', `${runnerPaths.modelBase}/v1/messages`, {
      body: { model: 'x', messages: [{ role: 'user', content: 'hi' }] },
      headers: { 'x-api-key': t.sandbox.spec.token },
    });
    expect(model.status).toBe(401);
    expect((await call(runnerSide(), 'GET', runnerPaths.turn(t.sandbox.spec.turnId), asRunner(t.sandbox.spec.token))).status).toBe(401);
  });

  it('fails a turn whose sandbox exits without a result, saying how, and names running out of memory', async () => {
    const plain = await startTurn('crash');
    plain.sandbox.end({ kind: 'exited', exitCode: 1, signal: null, outOfMemory: false });
    await expect.poll(async () => (await turnOf(plain)).status).toBe('failed');
    expect(await turnOf(plain)).toMatchObject({ reason: 'the sandbox exited with code 1 without reporting a result' });

    const oom = await startTurn('oom');
    oom.sandbox.end({ kind: 'exited', exitCode: null, signal: 'SIGKILL', outOfMemory: true });
    await expect.poll(async () => (await turnOf(oom)).status).toBe('failed');
    expect((await turnOf(oom)).reason).toMatch(/ran out of memory \(limit 1024 MiB\) and was killed by SIGKILL/);
  });

  it('fails a result that claims a saved state the API never received', async () => {
    const t = await startTurn('liar');
    const claim = { ...result('saved?'), stateSaved: true };
    expect(
      (await call(runnerSide(), 'POST', runnerPaths.result(t.sandbox.spec.turnId), { body: claim, ...asRunner(t.sandbox.spec.token) })).status,
    ).toBe(200);
    expect(await turnOf(t)).toMatchObject({ status: 'failed', reason: expect.stringMatching(/never arrived/) });
  });

  it('refuses a malformed result with 400 and leaves the turn running', async () => {
    const t = await startTurn('garbled');
    const bad = await call(runnerSide(), 'POST', runnerPaths.result(t.sandbox.spec.turnId), {
      body: { outcome: 'maybe' },
      ...asRunner(t.sandbox.spec.token),
    });
    expect(bad.status).toBe(400);
    expect(await turnOf(t)).toMatchObject({ status: 'running' });
    t.sandbox.end({ kind: 'exited', exitCode: 0, signal: null, outOfMemory: false });
  });

  it('keeps at most 100,000 characters of an answer, saying it was cut', async () => {
    const t = await startTurn('verbose');
    const posted = await call(runnerSide(), 'POST', runnerPaths.result(t.sandbox.spec.turnId), {
      body: result('z'.repeat(300_000)),
      ...asRunner(t.sandbox.spec.token),
    });
    expect(posted.status).toBe(200);
    const text = String((await turnOf(t)).text);
    expect(text.startsWith('z'.repeat(100_000))).toBe(true);
    expect(text).toMatch(/the answer was 300000 characters; only the first 100000 are kept\]$/);
    expect(text.length).toBeLessThan(100_200);
  });

  it("refuses a session id that is not the agent's UUID: the next turn would hand it to claude --resume", async () => {
    const t = await startTurn('resumer');
    const forged = await call(runnerSide(), 'POST', runnerPaths.result(t.sandbox.spec.turnId), {
      body: { ...result('done'), sessionId: '../../../tmp/evil' },
      ...asRunner(t.sandbox.spec.token),
    });
    expect(forged.status).toBe(400);
    expect(await turnOf(t)).toMatchObject({ status: 'running' });
    t.sandbox.end({ kind: 'exited', exitCode: 0, signal: null, outOfMemory: false });
  });
});
