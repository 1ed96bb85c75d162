import { describe, expect, it } from 'vitest';
import type { RecordedCall } from '../fixtures/fake-anthropic.js';
import { readEvents } from '../support/sse.js';
import { call, linkPath, prompt, useServiceWithFake } from '../support/service.js';

/** The agent's main loop: the calls that offer tools (side calls, such as titles, offer none). */
const mainCalls = (calls: RecordedCall[]): RecordedCall[] => calls.filter((c) => Array.isArray(c.body.tools) && c.body.tools.length > 0);
const toolNames = (c: RecordedCall): string[] => (c.body.tools as Array<{ name: string }>).map((t) => t.name);
const systemText = (c: RecordedCall): string => JSON.stringify(c.body.system ?? '');

describe('agent options per conversation, through the real Claude Code CLI', () => {
  const running = useServiceWithFake({ CLAUDERUN_MODELS: 'claude-opus-5-5,claude-haiku-5-5,claude-sonnet-test' });

  /** The main calls a request makes, by the calls the fake saw while it ran. */
  async function turnCalls(userId: string, body: Record<string, unknown>) {
    const before = running.fake.calls.length;
    const answer = await prompt(running.service, userId, body);
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return { answer: answer.body, calls: mainCalls(running.fake.calls.slice(before)) };
  }

  it('runs every turn of a conversation with its model and instructions; a turn may override them for itself', async () => {
    const first = await turnCalls('opal', { message: 'hello', options: { model: 'claude-sonnet-test', systemPrompt: 'Answer like a ZEBRA.' } });
    expect(first.calls.length).toBeGreaterThan(0);
    expect(first.calls.every((c) => c.body.model === 'claude-sonnet-test' && systemText(c).includes('Answer like a ZEBRA.'))).toBe(true);
    const conversationId = String(first.answer.conversationId);

    const second = await turnCalls('opal', { message: 'again', conversationId });
    expect(second.calls.every((c) => c.body.model === 'claude-sonnet-test' && systemText(c).includes('Answer like a ZEBRA.'))).toBe(true);

    const third = await turnCalls('opal', { message: 'once differently', conversationId, options: { systemPrompt: 'Answer like an OKAPI.' } });
    expect(third.calls.length).toBeGreaterThan(0);
    for (const c of third.calls) {
      expect(c.body.model).toBe('claude-sonnet-test');
      expect(systemText(c)).toContain('Answer like an OKAPI.');
      expect(systemText(c)).not.toContain('ZEBRA');
    }

    const fourth = await turnCalls('opal', { message: 'as before', conversationId });
    expect(fourth.calls.every((c) => systemText(c).includes('Answer like a ZEBRA.') && !systemText(c).includes('OKAPI'))).toBe(true);

    const view = await call(running.service, 'GET', `/api/conversations/${conversationId}`, { userId: 'opal' });
    expect(view.body.options).toEqual({ model: 'claude-sonnet-test', systemPrompt: 'Answer like a ZEBRA.' });
    expect((view.body.turns as Array<{ options: unknown }>).map((t) => t.options)).toEqual([
      { model: 'claude-sonnet-test', systemPrompt: 'Answer like a ZEBRA.' },
      { model: 'claude-sonnet-test', systemPrompt: 'Answer like a ZEBRA.' },
      { model: 'claude-sonnet-test', systemPrompt: 'Answer like an OKAPI.' },
      { model: 'claude-sonnet-test', systemPrompt: 'Answer like a ZEBRA.' },
    ]);
  });

  it('keeps the options of a conversation created empty for its turns', async () => {
    const created = await call(running.service, 'POST', '/api/conversations', {
      userId: 'pia',
      body: { title: 'tools', options: { disallowedTools: ['Bash'], maxTurns: 5 } },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const { calls, answer } = await turnCalls('pia', { message: 'bash: echo not-run', conversationId: created.body.conversationId });
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls) expect(toolNames(c)).not.toContain('Bash');
    expect(String(answer.text)).toMatch(/No such tool available: Bash/);
  });

  it('offers only the allowed tools, and refuses the calls their patterns do not allow', async () => {
    const readOnly = await turnCalls('quinn', { message: 'bash: touch /workspace/made-it', options: { allowedTools: ['Read'] } });
    for (const c of readOnly.calls) expect(toolNames(c).filter((name) => name !== 'DeferredToolPlaceholder')).toEqual(['Read']);
    expect(String(readOnly.answer.text)).toMatch(/No such tool available: Bash/);

    const options = { allowedTools: ['Bash(touch:*)'] };
    const refused = await turnCalls('quinn', { message: 'bash: rm -rf /workspace', options });
    expect(String(refused.answer.text)).toMatch(/Permission to use Bash has been denied/);
    const conversationId = refused.answer.conversationId;
    const allowed = await turnCalls('quinn', { message: 'bash: touch /workspace/made-it', conversationId });
    expect(String(allowed.answer.text)).not.toMatch(/denied/);
    const files = await call(running.service, 'GET', `/api/conversations/${String(conversationId)}/files`, { userId: 'quinn' });
    expect((files.body.files as Array<{ path: string }>).map((f) => f.path)).toContain('made-it');
  });

  it('holds a tool list against Claude Code settings and hooks in the workspace, which the agent or a user can put there', async () => {
    const created = await call(running.service, 'POST', '/api/conversations', {
      userId: 'vera',
      body: { options: { allowedTools: ['Bash(git log:*)'] } },
    });
    const conversationId = String(created.body.conversationId);
    const put = (name: string, json: unknown) =>
      fetch(`${running.service.url}/api/conversations/${conversationId}/files/${name}`, {
        method: 'PUT',
        headers: { 'x-user-id': 'vera' },
        body: JSON.stringify(json),
      });
    expect((await put('.claude/settings.local.json', { permissions: { allow: ['Bash', 'Bash(touch:*)'] } })).status).toBe(201);
    const hook = { hooks: { UserPromptSubmit: [{ hooks: [{ type: 'command', command: 'echo ran > /workspace/HOOKED' }] }] } };
    expect((await put('.claude/settings.json', { ...hook, permissions: { allow: ['Bash'] } })).status).toBe(201);
    const { answer } = await turnCalls('vera', { message: 'bash: touch /workspace/WIDENED', conversationId });
    expect(String(answer.text)).toMatch(/Permission to use Bash has been denied/);
    const files = await call(running.service, 'GET', `/api/conversations/${conversationId}/files`, { userId: 'vera' });
    const paths = (files.body.files as Array<{ path: string }>).map((f) => f.path);
    expect(paths).not.toContain('WIDENED');
    expect(paths).not.toContain('HOOKED');
  });

  it('ends a turn stopped at maxTurns with that reason, its work kept for the next prompt', async () => {
    const stopped = await turnCalls('rhea', { message: 'bash: echo step-one > /workspace/one.txt', options: { maxTurns: 1 } });
    expect(stopped.answer.status).toBe('succeeded');
    expect(String(stopped.answer.reason)).toMatch(/^max_turns: the agent stopped at its limit of 1 turns/);
    const conversationId = String(stopped.answer.conversationId);
    // The tool's work was saved with the turn's state.
    const file = await fetch(`${running.service.url}/api/conversations/${conversationId}/files/one.txt`, { headers: { 'x-user-id': 'rhea' } });
    expect(await file.text()).toBe('step-one\n');
    const next = await turnCalls('rhea', { message: 'go on', conversationId, options: { maxTurns: 3 } });
    expect(next.answer).toMatchObject({ status: 'succeeded', reason: null });
    // The session went on: the model saw the first prompt and its tool's result again.
    expect(next.calls.some((c) => JSON.stringify(c.body.messages).includes('echo step-one > /workspace/one.txt'))).toBe(true);
  });

  it('streams the answer as text deltas, batched, that build the final text from its start', async () => {
    const started = await prompt(running.service, 'sol', { message: 'words: 40' }, { prefer: 'respond-async' });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const links = started.body.links as { events: string };
    const { events } = await readEvents(`${running.service.url}${linkPath(links.events)}`, { 'x-user-id': 'sol' });
    const deltas = events.filter((e) => e.event === 'text_delta').map((e) => (e.data.data as { text: string }).text);
    const expected = Array.from({ length: 40 }, (_, i) => `word${i + 1}`).join(' ');
    // 40 words over 2 seconds: batched by time, neither one event per word nor one at the end.
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.length).toBeLessThan(20);
    // They build the answer from its start; the last ones, not yet sent when the whole block came, went with it.
    expect(deltas.join('').length).toBeGreaterThan(0);
    expect(expected.startsWith(deltas.join(''))).toBe(true);
    const kinds = events.map((e) => e.event);
    expect(kinds.lastIndexOf('text_delta')).toBeLessThan(kinds.indexOf('text'));
    expect(events.find((e) => e.event === 'text')?.data.data).toEqual({ text: expected });
    expect(events.at(-1)?.data.data).toMatchObject({ status: 'succeeded', text: expected });
  });
});

describe('agent options that are refused', () => {
  const running = useServiceWithFake({ CLAUDERUN_MODELS: 'claude-opus-5-5,claude-haiku-5-5' });
  const refusals: Array<[string, unknown, RegExp]> = [
    [
      'a model the deployment does not offer',
      { model: 'claude-other' },
      /options\.model: "claude-other" is not offered here; allowed: claude-opus-5-5, claude-haiku-5-5/,
    ],
    ['instructions over 10 KB', { systemPrompt: 'é'.repeat(5121) }, /systemPrompt must be at most 10240 bytes/],
    ['a tool name that reads as a CLI option', { allowedTools: ['--dangerously-skip-permissions'] }, /a tool name is a name/],
    ['two rules in one name', { disallowedTools: ['Read) Bash(rm'] }, /a tool name is a name/],
    ['a control character in a pattern', { allowedTools: ['Bash(ls\nrm:*)'] }, /a tool name is a name/],
    ['more than 50 tools', { disallowedTools: Array.from({ length: 51 }, (_, i) => `Tool${i}`) }, /at most 50 tool names/],
    ['a tool both allowed and taken away', { allowedTools: ['Read'], disallowedTools: ['Read'] }, /Read both allowed and disallowed/],
    ['maxTurns of 0', { maxTurns: 0 }, /maxTurns must be at least 1/],
    ['"default" as a tool, which the CLI reads as every tool', { allowedTools: ['default'] }, /"default" is not a tool name/],
    ['"default" with a pattern, which is "default" to --tools', { allowedTools: ['Default(x)'] }, /"default" is not a tool name/],
    ['a NUL in the instructions', { systemPrompt: 'a\u0000b' }, /systemPrompt must not hold control characters/],
    ['an option that does not exist', { permissionMode: 'bypass' }, /permissionMode/],
  ];

  for (const [what, options, message] of refusals) {
    it(`refuses ${what} with a 400 naming it, on both routes`, async () => {
      const callsBefore = running.fake.calls.length;
      const turn = await prompt(running.service, 'tess', { message: 'hi', options });
      expect(turn.status).toBe(400);
      expect((turn.body.error as { message: string }).message).toMatch(message);
      const created = await call(running.service, 'POST', '/api/conversations', { userId: 'tess', body: { options } });
      expect(created.status).toBe(400);
      expect((created.body.error as { message: string }).message).toMatch(message);
      expect(running.fake.calls.length).toBe(callsBefore);
    });
  }

  it('names the allowed models in the refusal, and lists them in the client config', async () => {
    const turn = await prompt(running.service, 'tess', { message: 'hi', options: { model: 'claude-other' } });
    expect((turn.body.error as { details: unknown }).details).toEqual({ allowed: ['claude-opus-5-5', 'claude-haiku-5-5'] });
    const config = await call(running.service, 'GET', '/api/client-config');
    expect(config.body).toMatchObject({ models: ['claude-opus-5-5', 'claude-haiku-5-5'], defaultModel: 'claude-opus-5-5' });
  });

  it('refuses a turn override with a model not offered, and keeps the conversation as it was', async () => {
    const first = await prompt(running.service, 'uma', { message: 'hi' });
    expect(first.status).toBe(200);
    const conversationId = first.body.conversationId;
    const refused = await prompt(running.service, 'uma', { message: 'hi', conversationId, options: { model: 'claude-other' } });
    expect(refused.status).toBe(400);
    const view = await call(running.service, 'GET', `/api/conversations/${String(conversationId)}`, { userId: 'uma' });
    expect(view.body.options).toEqual({});
    expect((view.body.turns as unknown[]).length).toBe(1);
  });
});
