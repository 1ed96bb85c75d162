import { describe, expect, it } from 'vitest';
import { prompt, useServiceWithFake } from '../support/service.js';

describe('the HTTP API refuses bad input with a clear JSON error', () => {
  const running = useServiceWithFake();

  const expectError = (answer: { status: number; body: Record<string, unknown> }, status: number, code: string, message?: RegExp) => {
    expect(answer.status, JSON.stringify(answer.body)).toBe(status);
    const error = answer.body.error as { code: string; message: string };
    expect(error.code).toBe(code);
    if (message) expect(error.message).toMatch(message);
    expect(JSON.stringify(answer.body)).not.toMatch(/\n\s+at /); // no stack trace
  };

  it('answers /healthz', async () => {
    const response = await fetch(`${running.service.url}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  it('refuses broken JSON with 400', async () => {
    expectError(await prompt(running.service, 'alice', '{"message": "unterminated'), 400, 'invalid_request', /not valid JSON/);
  });

  it('refuses a missing, empty or non-string message with 400 naming the field', async () => {
    expectError(await prompt(running.service, 'alice', {}), 400, 'invalid_request', /message/);
    expectError(await prompt(running.service, 'alice', { message: '   ' }), 400, 'invalid_request', /message must not be empty/);
    expectError(await prompt(running.service, 'alice', { message: 42 }), 400, 'invalid_request', /message/);
    expectError(await prompt(running.service, 'alice', { message: 'hi', extra: true }), 400, 'invalid_request', /extra/);
    expectError(await prompt(running.service, 'alice', '[1, 2]'), 400, 'invalid_request');
  });

  it('refuses a body that is not JSON at all with 400', async () => {
    const response = await fetch(`${running.service.url}/api/conversation`, {
      method: 'POST',
      headers: { 'x-user-id': 'alice', 'content-type': 'text/plain' },
      body: 'hello',
    });
    expectError({ status: response.status, body: (await response.json()) as Record<string, unknown> }, 400, 'invalid_request');
  });

  it('refuses a message over 100 KB with 413', async () => {
    expectError(await prompt(running.service, 'alice', { message: 'x'.repeat(100 * 1024 + 1) }), 413, 'too_large', /102401 bytes/);
  });

  it('refuses a request without X-User-Id with 401', async () => {
    expectError(await prompt(running.service, undefined, { message: 'hi' }), 401, 'unauthenticated', /X-User-Id/);
  });

  it("answers 404 for an unknown conversation and for another user's, alike", async () => {
    expectError(await prompt(running.service, 'alice', { message: 'hi', conversationId: 'no-such-conversation' }), 404, 'not_found');
    const owned = await prompt(running.service, 'alice', { message: 'mine' });
    expect(owned.status).toBe(200);
    const stolen = await prompt(running.service, 'mallory', { message: 'let me in', conversationId: owned.body.conversationId });
    expectError(stolen, 404, 'not_found');
    expect((stolen.body.error as { message: string }).message).toBe(`conversation ${String(owned.body.conversationId)} not found`);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const response = await fetch(`${running.service.url}/api/nothing-here`);
    expectError({ status: response.status, body: (await response.json()) as Record<string, unknown> }, 404, 'not_found');
  });

  it("serves none of the runner's routes on the public port", async () => {
    for (const path of ['/internal/turns/anything', '/internal/model/v1/messages']) {
      const response = await fetch(`${running.service.url}${path}`, { method: 'POST', headers: { authorization: 'Bearer crt1.forged.token' } });
      expectError({ status: response.status, body: (await response.json()) as Record<string, unknown> }, 404, 'not_found');
    }
  });

  it('keeps the internal routes closed without a valid turn token', async () => {
    const turn = await fetch(`${running.service.internalUrl}/internal/turns/anything`, { headers: { authorization: 'Bearer crt1.forged.token' } });
    expectError({ status: turn.status, body: (await turn.json()) as Record<string, unknown> }, 401, 'unauthenticated');
    const model = await fetch(`${running.service.internalUrl}/internal/model/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'sk-guess', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'x', messages: [] }),
    });
    expect(model.status).toBe(401);
    expect(await model.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    expect(running.fake.calls.some((call) => JSON.stringify(call.body).includes('sk-guess'))).toBe(false);
  });
});
