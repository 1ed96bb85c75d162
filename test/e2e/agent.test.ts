import { describe, expect, it } from 'vitest';
import { contentText } from '../../functions/src/model/messages-request.js';
import { prompt, useServiceWithFake } from '../support/service.js';

describe('a prompt through the service, the sandbox and the real Claude Code CLI', () => {
  const running = useServiceWithFake();

  it('answers a plain prompt with the seed API shape, metered usage and the real key used upstream', async () => {
    const answer = await prompt(running.service, 'alice', { message: 'hello agent' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body).toMatchObject({ status: 'succeeded', text: 'echo: hello agent' });
    expect(answer.body.conversationId).toEqual(expect.any(String));
    expect(answer.body.turnId).toEqual(expect.any(String));
    expect(answer.body.durationMs).toBeGreaterThan(0);
    const usage = answer.body.usage as Record<string, number>;
    expect(usage.modelCalls).toBeGreaterThanOrEqual(1);
    expect(usage.inputTokens).toBeGreaterThan(0);
    expect(usage.outputTokens).toBeGreaterThan(0);
    expect(answer.body.costUsd).toBeGreaterThan(0);
    expect(running.fake.calls.length).toBeGreaterThan(0);
    expect(running.fake.calls.every((call) => call.apiKey === running.fake.apiKey)).toBe(true);
  });

  it('lets the agent write a file with a tool, and the file is there in the next turn', async () => {
    const first = await prompt(running.service, 'bob', { message: 'write: /workspace/notes.txt remember the milk' });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body.text).toMatch(/tool output: .*(created|wrote|success)/i);
    const second = await prompt(running.service, 'bob', { message: 'bash: cat /workspace/notes.txt', conversationId: first.body.conversationId });
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    expect(second.body.text).toContain('remember the milk');
  });

  it('resumes the conversation: the model sees the earlier messages in the second turn', async () => {
    const first = await prompt(running.service, 'carol', { message: 'my favourite colour is teal' });
    expect(first.status).toBe(200);
    const callsBefore = running.fake.calls.length;
    const second = await prompt(running.service, 'carol', { message: 'what did I say?', conversationId: first.body.conversationId });
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    expect(second.body.conversationId).toBe(first.body.conversationId);
    const mainCall = running.fake.calls.slice(callsBefore).find((call) => JSON.stringify(call.body.messages).includes('what did I say?'));
    expect(mainCall).toBeDefined();
    const texts = mainCall!.body.messages.map((m) => contentText(m.content));
    expect(texts.some((t) => t.includes('my favourite colour is teal'))).toBe(true);
    expect(texts.some((t) => t.includes('echo: my favourite colour is teal'))).toBe(true);
  });
});
