import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { call, prompt, type RunningService, useServiceWithFake } from '../support/service.js';

const MAX_FILE_BYTES = 200_000;
const MAX_STATE_BYTES = 300_000;

type Listed = { path: string; type: string; size: number; modifiedAt: string | null; target?: string };

async function send(service: RunningService, method: string, route: string, userId: string, body?: Buffer | string) {
  const response = await fetch(`${service.url}${route}`, { method, headers: { 'x-user-id': userId }, ...(body === undefined ? {} : { body }) });
  return { status: response.status, headers: response.headers, bytes: Buffer.from(await response.arrayBuffer()) };
}

/** A request whose path goes out exactly as given: fetch would resolve '..' and '%2E%2E' segments first. */
function sendRaw(service: RunningService, method: string, route: string, userId: string, body?: string) {
  return new Promise<{ status: number; bytes: Buffer }>((resolve, reject) => {
    const request = http.request(`${service.url}/`, { method, path: route, headers: { 'x-user-id': userId } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, bytes: Buffer.concat(chunks) }));
    });
    request.on('error', reject);
    request.end(body);
  });
}

const json = (bytes: Buffer) => JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;

async function newConversation(service: RunningService, userId: string): Promise<string> {
  const created = await call(service, 'POST', '/api/conversations', { userId, body: {} });
  expect(created.status).toBe(201);
  return String(created.body.conversationId);
}

async function listed(service: RunningService, userId: string, conversationId: string): Promise<Listed[]> {
  const answer = await call(service, 'GET', `/api/conversations/${conversationId}/files`, { userId });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  expect(answer.body.truncated).toBe(false);
  return answer.body.files as Listed[];
}

/** The names in an archive, by the system's own tar and unzip-free zip reading (its central directory). */
function tarNames(archive: Buffer): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'clauderun-archive-'));
  try {
    writeFileSync(path.join(dir, 'a.tar.gz'), archive);
    return execFileSync('tar', ['-tzf', path.join(dir, 'a.tar.gz')], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function zipNames(archive: Buffer): string[] {
  const names: string[] = [];
  // Central directory headers: signature PK\1\2, name length at +28, extra at +30, comment at +32, name at +46.
  for (let at = archive.indexOf('PK\x01\x02'); at !== -1; at = archive.indexOf('PK\x01\x02', at + 4)) {
    const nameLength = archive.readUInt16LE(at + 28);
    names.push(archive.subarray(at + 46, at + 46 + nameLength).toString('utf8'));
  }
  return names;
}

describe('workspace files: put before a prompt, see what the agent made, take it away', () => {
  const running = useServiceWithFake({
    CLAUDERUN_MAX_FILE_BYTES: String(MAX_FILE_BYTES),
    CLAUDERUN_MAX_STATE_BYTES: String(MAX_STATE_BYTES),
    CLAUDERUN_MAX_FILE_CHANGES_PER_MINUTE: '5',
  });

  it('a file put into an empty conversation is there for the first turn; what the agent changes and makes is listed and downloaded', async () => {
    const { service } = running;
    const user = `files-${Date.now()}`;
    const id = await newConversation(service, user);
    expect(await listed(service, user, id)).toEqual([]);

    const put = await send(service, 'PUT', `/api/conversations/${id}/files/src/hello.txt`, user, 'hello world\n');
    expect(put.status, put.bytes.toString()).toBe(201);
    expect(json(put.bytes)).toEqual({ path: 'src/hello.txt', size: 12 });
    expect(await listed(service, user, id)).toEqual([{ path: 'src/hello.txt', type: 'file', size: 12, modifiedAt: expect.any(String) }]);

    const answer = await prompt(service, user, {
      conversationId: id,
      message:
        'bash: sed -i s/world/agent/ src/hello.txt && cat src/hello.txt && mkdir -p out && printf made > out/new.bin && ln -s /etc/passwd out/link',
    });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(String(answer.body.text)).toContain('hello agent');

    const files = await listed(service, user, id);
    expect(files).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ path: 'src/hello.txt', type: 'file', size: 12 }),
        expect.objectContaining({ path: 'out/new.bin', type: 'file', size: 4 }),
        expect.objectContaining({ path: 'out/link', type: 'symlink', size: 0, target: '/etc/passwd' }),
      ]),
    );
    // Only the workspace: never the agent's session or home.
    expect(files.every((file) => !file.path.includes('.claude'))).toBe(true);

    const got = await send(service, 'GET', `/api/conversations/${id}/files/src/hello.txt`, user);
    expect(got.status).toBe(200);
    expect(got.bytes.toString()).toBe('hello agent\n');
    expect(got.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(got.headers.get('content-disposition')).toMatch(/^attachment; filename="?hello\.txt"?$/);
    expect(got.headers.get('x-content-type-options')).toBe('nosniff');
    expect(got.headers.get('content-length')).toBe('12');

    // A link is listed, never followed.
    const link = await send(service, 'GET', `/api/conversations/${id}/files/out/link`, user);
    expect(link.status).toBe(404);
    expect(json(link.bytes)).toMatchObject({ error: { code: 'not_found', message: expect.stringContaining('is a symlink to /etc/passwd') } });
    const under = await send(service, 'PUT', `/api/conversations/${id}/files/out/link/x`, user, 'x');
    expect(under.status).toBe(409);
    expect(json(under.bytes)).toMatchObject({ error: { message: 'out/link is a symlink, not a directory' } });

    const tarGz = await send(service, 'GET', `/api/conversations/${id}/archive`, user);
    expect(tarGz.status).toBe(200);
    expect(tarGz.headers.get('content-disposition')).toMatch(/^attachment; filename="?workspace-.+\.tar\.gz"?$/);
    expect(Number(tarGz.headers.get('content-length'))).toBe(tarGz.bytes.length);
    const inTar = tarNames(tarGz.bytes);
    expect(inTar).toEqual(expect.arrayContaining(['workspace/src/hello.txt', 'workspace/out/new.bin', 'workspace/out/link']));
    expect(inTar.every((name) => name.startsWith('workspace'))).toBe(true);
    const zip = await send(service, 'GET', `/api/conversations/${id}/archive?format=zip`, user);
    expect(zip.status).toBe(200);
    expect(zip.bytes.subarray(0, 4).toString('latin1')).toBe('PK\x03\x04');
    expect(zipNames(zip.bytes)).toEqual(expect.arrayContaining(['workspace/src/hello.txt', 'workspace/out/new.bin', 'workspace/out/link']));
    expect((await send(service, 'GET', `/api/conversations/${id}/archive?format=rar`, user)).status).toBe(400);

    expect((await send(service, 'DELETE', `/api/conversations/${id}/files/out`, user)).status).toBe(204);
    expect((await listed(service, user, id)).map((file) => file.path)).toEqual(['src/hello.txt']);
    expect((await send(service, 'GET', `/api/conversations/${id}/files/out/new.bin`, user)).status).toBe(404);
    expect((await send(service, 'DELETE', `/api/conversations/${id}/files/out`, user)).status).toBe(404);

    // The next turn resumes the same agent session, with the files as they are now.
    const next = await prompt(service, user, { conversationId: id, message: 'bash: ls -R . && cat src/hello.txt' });
    expect(String(next.body.text)).toContain('hello agent');
    expect(String(next.body.text)).not.toContain('new.bin');
  });

  it('refuses bad paths with 400 naming the rule, and files over the limit with 413', async () => {
    const { service } = running;
    const user = `paths-${Date.now()}`;
    const id = await newConversation(service, user);
    for (const [raw, rule] of [
      ['%2Fetc%2Fpasswd', 'not absolute'],
      ['a/%2E%2E/b', "'..'"],
      ['a/../../b', "'..'"],
      ['a%00b', 'NUL'],
      ['a/.%2Fb', "'.' segment"],
      [`${'d/'.repeat(520)}f`, 'longer than 1024 bytes'],
      ['x'.repeat(256), 'longer than 255 bytes'],
    ] as const) {
      const refused = await sendRaw(service, 'PUT', `/api/conversations/${id}/files/${raw}`, user, 'x');
      expect(refused.status, raw).toBe(400);
      expect(json(refused.bytes)).toMatchObject({ error: { code: 'invalid_request', message: expect.stringContaining(rule) } });
      expect((await sendRaw(service, 'GET', `/api/conversations/${id}/files/${raw}`, user)).status).toBe(400);
    }
    const big = await send(service, 'PUT', `/api/conversations/${id}/files/big.bin`, user, Buffer.alloc(MAX_FILE_BYTES + 1));
    expect(big.status).toBe(413);
    expect(json(big.bytes)).toMatchObject({ error: { code: 'too_large', message: `a file may be at most ${MAX_FILE_BYTES} bytes` } });
    expect(await listed(service, user, id)).toEqual([]);
  });

  it('a change that takes the state over its limit is refused with 413 and leaves the state as it was', async () => {
    const { service } = running;
    const user = `state-${Date.now()}`;
    const id = await newConversation(service, user);
    // Random bytes do not compress: two of these are over the state's limit.
    const first = randomBytes(MAX_FILE_BYTES - 10);
    expect((await send(service, 'PUT', `/api/conversations/${id}/files/one.bin`, user, first)).status).toBe(201);
    const second = await send(service, 'PUT', `/api/conversations/${id}/files/two.bin`, user, randomBytes(MAX_FILE_BYTES - 10));
    expect(second.status).toBe(413);
    expect(json(second.bytes)).toMatchObject({ error: { code: 'too_large', message: expect.stringContaining(`${MAX_STATE_BYTES} bytes`) } });
    expect((await listed(service, user, id)).map((file) => file.path)).toEqual(['one.bin']);
    expect((await send(service, 'GET', `/api/conversations/${id}/files/one.bin`, user)).bytes.equals(first)).toBe(true);
  });

  it('holds a user to 5 changes a minute: the 6th is refused with 429 naming the limit, and changes nothing', async () => {
    const { service } = running;
    const user = `loop-${Date.now()}`;
    const id = await newConversation(service, user);
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await send(service, 'PUT', `/api/conversations/${id}/files/f${i}.txt`, user, `${i}`)).status);
    expect(statuses).toEqual([201, 201, 201, 201, 201, 429]);
    const refused = await send(service, 'DELETE', `/api/conversations/${id}/files/f0.txt`, user);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(json(refused.bytes)).toMatchObject({ error: { code: 'rate_limited', details: { limit: 'file_changes_per_minute', max: 5 } } });
    expect((await listed(service, user, id)).map((file) => file.path).sort()).toEqual(['f0.txt', 'f1.txt', 'f2.txt', 'f3.txt', 'f4.txt']);
  });

  it('keeps every change made at once: each is admitted and kept whole, or refused naming the limit', async () => {
    const { service } = running;
    const user = `race-${Date.now()}`;
    const id = await newConversation(service, user);
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => send(service, 'PUT', `/api/conversations/${id}/files/f${i}.txt`, user, `file ${i}`)),
    );
    const kept = answers.flatMap((answer, i) => (answer.status === 201 ? [`f${i}.txt`] : []));
    expect(kept.length).toBeGreaterThanOrEqual(2);
    for (const answer of answers.filter((a) => a.status !== 201)) {
      expect(answer.status).toBe(429);
      expect(json(answer.bytes)).toMatchObject({ error: { details: { limit: 'file_changes', max: 2 } } });
    }
    expect((await listed(service, user, id)).map((file) => file.path).sort()).toEqual(kept.sort());
  });

  it("refuses a change while a turn runs (409 naming it), and another user's conversation is 404 for every call", async () => {
    const { service } = running;
    const user = `busy-${Date.now()}`;
    const id = await newConversation(service, user);
    const started = await prompt(service, user, { conversationId: id, message: 'bash: sleep 60' }, { prefer: 'respond-async' });
    expect(started.status).toBe(202);
    const turnId = String(started.body.turnId);
    for (const [method, body] of [
      ['PUT', 'x'],
      ['DELETE', undefined],
    ] as const) {
      const refused = await send(service, method, `/api/conversations/${id}/files/a.txt`, user, body);
      expect(refused.status).toBe(409);
      expect(json(refused.bytes)).toMatchObject({ error: { code: 'conflict', details: { activeTurnId: turnId } } });
    }
    // Reading is fine while it runs: it shows the last stored state.
    expect(await listed(service, user, id)).toEqual([]);
    for (const [method, route] of [
      ['GET', 'files'],
      ['GET', 'files/a.txt'],
      ['PUT', 'files/a.txt'],
      ['DELETE', 'files/a.txt'],
      ['GET', 'archive'],
    ] as const) {
      const other = await send(service, method, `/api/conversations/${id}/${route}`, 'intruder', method === 'PUT' ? 'x' : undefined);
      expect(other.status, `${method} ${route}`).toBe(404);
      expect(json(other.bytes)).toMatchObject({ error: { code: 'not_found', message: `conversation ${id} not found` } });
    }
    await call(service, 'POST', `/api/conversations/${id}/turns/${turnId}/cancel`, { userId: user });
    expect((await send(service, 'PUT', `/api/conversations/${id}/files/a.txt`, user, 'after')).status).toBe(201);
  });

  it("keeps a state only as it can be listed: a name that is not UTF-8 fails the turn saying so, and the previous state stays; a backslash's name stays out of a zip", async () => {
    const { service } = running;
    const user = `names-${Date.now()}`;
    const id = await newConversation(service, user);
    expect((await send(service, 'PUT', `/api/conversations/${id}/files/kept.txt`, user, 'kept')).status).toBe(201);
    const bad = await prompt(service, user, { conversationId: id, message: 'bash: printf x > "$(printf \'bad\\377\')"' });
    expect(bad.body).toMatchObject({ error: { code: 'sandbox_failed', message: expect.stringContaining('not UTF-8') } });
    expect((await listed(service, user, id)).map((file) => file.path)).toEqual(['kept.txt']);
    const slash = await prompt(service, user, { conversationId: id, message: "bash: printf y > 'a\\..\\..\\b'" });
    expect(slash.status, JSON.stringify(slash.body)).toBe(200);
    expect((await listed(service, user, id)).map((file) => file.path).sort()).toEqual(['a\\..\\..\\b', 'kept.txt']);
    const zip = await send(service, 'GET', `/api/conversations/${id}/archive?format=zip`, user);
    expect(zip.status).toBe(200);
    expect(zipNames(zip.bytes).sort()).toEqual(['workspace/', 'workspace/kept.txt']);
  });

  it('refuses to delete a file that a hard link elsewhere needs, so that the state still unpacks', async () => {
    const { service } = running;
    const user = `links-${Date.now()}`;
    const id = await newConversation(service, user);
    expect((await send(service, 'PUT', `/api/conversations/${id}/files/a.txt`, user, 'shared')).status).toBe(201);
    expect((await prompt(service, user, { conversationId: id, message: 'bash: ln a.txt b.txt' })).status).toBe(200);
    const files = await listed(service, user, id);
    const link = files.find((file) => file.type === 'hardlink');
    expect(link).toBeDefined();
    const target = link?.target ?? '';
    const refused = await send(service, 'DELETE', `/api/conversations/${id}/files/${target}`, user);
    expect(refused.status).toBe(409);
    expect(json(refused.bytes)).toMatchObject({ error: { message: `${link?.path} is a hard link to ${target}: delete or replace it first` } });
    expect((await send(service, 'DELETE', `/api/conversations/${id}/files/${link?.path}`, user)).status).toBe(204);
    expect((await send(service, 'DELETE', `/api/conversations/${id}/files/${target}`, user)).status).toBe(204);
    const after = await prompt(service, user, { conversationId: id, message: 'bash: ls' });
    expect(after.body.status, JSON.stringify(after.body)).toBe('succeeded');
  });
});
