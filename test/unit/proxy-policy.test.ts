import { describe, expect, it } from 'vitest';
import { KeyedMinuteAllowance, KeyedSlots } from '../../functions/src/http/keyed-slots.js';
import { allowedBetas, checkModelRequest } from '../../functions/src/model/proxy-policy.js';

const policy = { models: ['claude-opus-5-5', 'claude-haiku-5-5'], maxOutputTokens: 32_000, maxCallsInFlight: 2, requestBytesPerMinute: 1000 };
const check = (body: unknown, call: 'messages' | 'count_tokens' = 'messages') => checkModelRequest(call, Buffer.from(JSON.stringify(body)), policy);
const base = { model: 'claude-opus-5-5', max_tokens: 1000, messages: [{ role: 'user', content: 'hi' }] };

describe("the model proxy's policy", () => {
  it('keeps only allowed beta values, once each', () => {
    expect(allowedBetas('claude-code-20250219, mcp-client-2025-04-04,claude-code-20250219,files-api-2025-04-14')).toBe('claude-code-20250219');
    expect(allowedBetas('mcp-client-2025-04-04')).toBeUndefined();
    expect(allowedBetas(undefined)).toBeUndefined();
  });

  it('accepts what the agent sends: client tools with any schema, tool calls with any input, inline images', () => {
    const verdict = check({
      ...base,
      system: [{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } }],
      tools: [{ name: 'Fetch', description: 'x', input_schema: { type: 'object', properties: { source: { type: 'object' } } } }],
      messages: [
        { role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'Fetch', input: { source: { type: 'url', url: 'x' } } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: 'ok' }] }] },
      ],
      thinking: { type: 'adaptive' },
      context_management: { edits: [] },
      output_config: { effort: 'medium' },
      metadata: { user_id: 'u' },
      stream: true,
    });
    expect(verdict.ok).toBe(true);
  });

  it.each([
    ['a model not allowed', { ...base, model: 'claude-other' }, /model "claude-other" is not allowed/],
    ['more output than the cap', { ...base, max_tokens: 32_001 }, /over this deployment's limit of 32000/],
    ['a server tool', { ...base, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, /server-side tools/],
    ['MCP servers', { ...base, mcp_servers: [] }, /mcp_servers/],
    ['a URL source in the system prompt', { ...base, system: [{ type: 'document', source: { type: 'url', url: 'https://x' } }] }, /"url"/],
    [
      'a file source nested in a document',
      {
        ...base,
        messages: [
          {
            role: 'user',
            content: [{ type: 'document', source: { type: 'content', content: [{ type: 'image', source: { type: 'file', file_id: 'f' } }] } }],
          },
        ],
      },
      /"file"/,
    ],
    ['a container upload', { ...base, messages: [{ role: 'user', content: [{ type: 'container_upload', file_id: 'f' }] }] }, /container_upload/],
    ['no max_tokens', { model: 'claude-opus-5-5', messages: [] }, /max_tokens/],
  ])('refuses %s', (_what, body, message) => {
    const verdict = check(body);
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) expect(verdict.message).toMatch(message);
  });

  it('refuses content nested past any real request, and a body that is not JSON', () => {
    let content: unknown = [{ type: 'text', text: 'deep' }];
    for (let i = 0; i < 40; i++) content = [{ type: 'tool_result', tool_use_id: 't', content }];
    expect(check({ ...base, messages: [{ role: 'user', content }] })).toMatchObject({ ok: false, message: expect.stringMatching(/deeper/) });
    expect(checkModelRequest('messages', Buffer.from('{"model":'), policy)).toMatchObject({ ok: false, message: 'the request body is not JSON' });
    const deepInput = `{"model":"claude-opus-5-5","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"x","input":${'['.repeat(100_000)}${']'.repeat(100_000)}}]}]}`;
    expect(checkModelRequest('messages', Buffer.from(deepInput), policy).ok).toBe(false);
  });

  it('counts tokens for allowed models without an output cap', () => {
    expect(check({ model: 'claude-haiku-5-5', messages: [] }, 'count_tokens').ok).toBe(true);
    expect(check({ model: 'claude-haiku-5-5', messages: [], max_tokens: 5 }, 'count_tokens').ok).toBe(false);
  });

  it('lets a turn hold only so many calls at once, each turn on its own', () => {
    const inFlight = new KeyedSlots(policy.maxCallsInFlight);
    expect([inFlight.take('a'), inFlight.take('a'), inFlight.take('a')]).toEqual([true, true, false]);
    expect(inFlight.take('b')).toBe(true);
    inFlight.give('a');
    expect(inFlight.take('a')).toBe(true);
    expect(inFlight.take('a')).toBe(false);
  });

  it('allows each key so many units a minute, whole again the next minute', () => {
    let now = 60_000 * 100 + 59_000;
    const allowance = new KeyedMinuteAllowance(policy.requestBytesPerMinute, () => now);
    expect(allowance.spend('a', 600)).toBe(true);
    expect(allowance.spend('a', 600)).toBe(false);
    expect(allowance.spend('b', 1000)).toBe(true);
    expect(allowance.secondsToNextMinute()).toBe(1);
    now += 1000;
    expect(allowance.spend('a', 1000)).toBe(true);
  });
});
