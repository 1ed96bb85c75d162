import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelUpstream } from '../../functions/src/adapters.js';
import { loadConfig } from '../../functions/src/config.js';
import type { RunnerService } from '../../functions/src/conversations/runner-service.js';
import type { Turn } from '../../functions/src/domain/turn.js';
import { modelProxyRoutes } from '../../functions/src/http/model-proxy.js';
import { PolicyChecker } from '../../functions/src/model/policy-checker.js';
import { costUsd } from '../../functions/src/model/pricing.js';
import { UpstreamCredentialsError } from '../../functions/src/model/upstream.js';
import { CLOUD_PLATFORM_SCOPE, vertexCall, VertexUpstream } from '../../functions/src/model/vertex.js';
import { startFakeMetadataServer, type FakeMetadataServer } from '../fixtures/fake-metadata-server.js';
import { startFakeVertex, type FakeVertex } from '../fixtures/fake-vertex.js';

const settings = { project: 'my-project-1', region: 'us-east5', endpoint: 'https://us-east5-aiplatform.googleapis.com' };
const MODEL = 'claude-sonnet-4-5@20250929';
const messages = [{ role: 'user', content: 'hi' }];
const headers = {
  'anthropic-version': '2023-06-01',
  'anthropic-beta': 'claude-code-20250219,interleaved-thinking-2025-05-14',
  'content-type': 'application/json',
};
const body = (json: unknown) => Buffer.from(JSON.stringify(json));
const base = 'https://us-east5-aiplatform.googleapis.com/v1/projects/my-project-1/locations/us-east5/publishers/anthropic/models';

describe('the Vertex AI request for a Messages API call', () => {
  it('names the model in the path, not the body, adds anthropic_version and drops the anthropic-version header', () => {
    const call = vertexCall(settings, { call: 'messages', headers, body: body({ model: MODEL, max_tokens: 10, messages }) });
    expect(call.url).toBe(`${base}/claude-sonnet-4-5@20250929:rawPredict`);
    expect(JSON.parse(call.body)).toEqual({ anthropic_version: 'vertex-2023-10-16', max_tokens: 10, messages });
    expect(call.headers).toEqual({ 'anthropic-beta': headers['anthropic-beta'], 'content-type': 'application/json' });
  });

  it('streams through :streamRawPredict when the body asks for a stream', () => {
    const call = vertexCall(settings, { call: 'messages', headers, body: body({ model: MODEL, max_tokens: 10, messages, stream: true }) });
    expect(call.url).toBe(`${base}/claude-sonnet-4-5@20250929:streamRawPredict`);
    expect(JSON.parse(call.body)).toMatchObject({ stream: true, anthropic_version: 'vertex-2023-10-16' });
    expect(JSON.parse(call.body)).not.toHaveProperty('model');
  });

  it('counts tokens at the one count-tokens endpoint, the model kept in the body', () => {
    const call = vertexCall(settings, { call: 'count_tokens', headers, body: body({ model: MODEL, messages }) });
    expect(call.url).toBe(`${base}/count-tokens:rawPredict`);
    expect(JSON.parse(call.body)).toEqual({ anthropic_version: 'vertex-2023-10-16', model: MODEL, messages });
  });

  it('encodes what could leave the path segment, and uses the global endpoint for region global', () => {
    const config = loadConfig({ CLAUDERUN_MODEL_UPSTREAM: 'vertex', CLAUDERUN_VERTEX_PROJECT: 'my-project-1', CLAUDERUN_VERTEX_REGION: 'global' });
    if (config.model.upstream !== 'vertex') throw new Error('not vertex');
    const call = vertexCall(config.model, { call: 'messages', headers: {}, body: body({ model: 'a/../b?c', max_tokens: 1, messages }) });
    expect(call.url).toBe(
      'https://aiplatform.googleapis.com/v1/projects/my-project-1/locations/global/publishers/anthropic/models/a%2F..%2Fb%3Fc:rawPredict',
    );
    expect(modelUpstream(config).name).toBe('vertex');
  });

  it('prices Vertex model ids as their families, 10% over them on a regional endpoint', () => {
    const usage = { modelCalls: 1, inputTokens: 1_000_000, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 };
    const global = new VertexUpstream({ project: 'p', region: 'global', endpoint: 'http://127.0.0.1:9' }).priceFactor;
    const regional = new VertexUpstream({ project: 'p', region: 'us-east5', endpoint: 'http://127.0.0.1:9' }).priceFactor;
    expect(costUsd('claude-sonnet-4-5@20250929', usage, global)).toBe(3);
    expect(costUsd('claude-haiku-4-5@20251001', usage, global)).toBe(1);
    expect(costUsd('claude-opus-4-1@20250805', usage, global)).toBe(15);
    expect(costUsd('claude-opus-4-5@20251101', usage, global)).toBe(5);
    expect(costUsd('claude-sonnet-4-5@20250929', usage, regional)).toBeCloseTo(3.3, 6);
  });
});

describe('VertexUpstream with Application Default Credentials from the metadata server', () => {
  let metadata: FakeMetadataServer;
  let vertex: FakeVertex;
  let restoreEnv: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    metadata = await startFakeMetadataServer({ projectId: 'my-project-1' });
    vertex = await startFakeVertex({ tokens: metadata, project: 'my-project-1', region: 'us-east5' });
    // Only the metadata stand-in: no key file or gcloud login of this machine is found.
    restoreEnv = await metadata.useForThisProcess();
  });
  afterAll(async () => {
    await restoreEnv?.();
    await vertex?.close();
    await metadata?.close();
  });

  const send = (upstream: VertexUpstream, json: Record<string, unknown>) =>
    upstream.send({
      call: 'messages',
      beta: true,
      headers,
      body: body({ model: MODEL, max_tokens: 10, messages, ...json }),
      signal: AbortSignal.timeout(10_000),
    });

  it('calls with the service account token, and fetches a new one when it is about to expire', async () => {
    // google-auth-library renews a token 5 minutes before it expires: one of 301 s is good for a second.
    metadata.expiresInSeconds = 301;
    const upstream = new VertexUpstream({ ...settings, endpoint: vertex.url });
    const first = await send(upstream, {});
    expect(first.status, await first.clone().text()).toBe(200);
    expect(await first.json()).toMatchObject({ type: 'message', model: MODEL, usage: { input_tokens: expect.any(Number) } });
    const streamed = await send(upstream, { stream: true });
    expect(streamed.headers.get('content-type')).toContain('text/event-stream');
    expect(await streamed.text()).toContain('event: message_stop');
    expect(metadata.issued).toHaveLength(1);
    expect(metadata.scopesAsked).toEqual([CLOUD_PLATFORM_SCOPE]);
    await sleep(1200);
    expect((await send(upstream, {})).status).toBe(200);
    expect(metadata.issued).toHaveLength(2);
    expect(vertex.calls.map((c) => [c.kind, c.model, c.token])).toEqual([
      ['rawPredict', MODEL, metadata.issued[0]],
      ['streamRawPredict', MODEL, metadata.issued[0]],
      ['rawPredict', MODEL, metadata.issued[1]],
    ]);
    // No ?beta=true, no anthropic-version header; the betas passed on.
    expect(vertex.requests.every((r) => !r.url.includes('?') && r.versionHeader === undefined && r.betas === headers['anthropic-beta'])).toBe(true);
  });

  it('counts tokens through Vertex', async () => {
    metadata.expiresInSeconds = 3599;
    const upstream = new VertexUpstream({ ...settings, endpoint: vertex.url });
    const answer = await upstream.send({
      call: 'count_tokens',
      beta: true,
      headers,
      body: body({ model: MODEL, messages }),
      signal: AbortSignal.timeout(10_000),
    });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ input_tokens: expect.any(Number) });
    expect(vertex.calls.at(-1)).toMatchObject({ kind: 'count-tokens', model: MODEL });
  });

  it('the stand-in refuses what Vertex refuses: no token, an unknown one, a model in the body, no anthropic_version, a query, another path', async () => {
    const good = JSON.stringify({ anthropic_version: 'vertex-2023-10-16', max_tokens: 1, messages });
    const post = (url: string, init: { token?: string; body?: string } = {}) =>
      fetch(`${vertex.url}${url}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(init.token !== undefined ? { authorization: `Bearer ${init.token}` } : {}) },
        body: init.body ?? good,
      });
    const path = `/v1/projects/my-project-1/locations/us-east5/publishers/anthropic/models/${MODEL}:rawPredict`;
    const token = metadata.issued.at(-1) ?? '';
    expect((await post(path, { token })).status).toBe(200);
    expect((await post(path)).status).toBe(401);
    expect((await post(path, { token: 'ya29.made-up' })).status).toBe(401);
    expect((await post(path, { token, body: JSON.stringify({ ...JSON.parse(good), model: MODEL }) })).status).toBe(400);
    expect((await post(path, { token, body: JSON.stringify({ max_tokens: 1, messages }) })).status).toBe(400);
    expect((await post(`${path}?beta=true`, { token })).status).toBe(400);
    expect((await post(path.replace('my-project-1', 'other-project'), { token })).status).toBe(403);
    expect((await post('/v1/messages', { token })).status).toBe(404);
    const refused = await post(path);
    expect(await refused.json()).toMatchObject({ error: { code: 401, status: 'UNAUTHENTICATED' } });
  });

  it("answers Vertex's own refusals in the Messages API's error shape, with their status", async () => {
    const made = { getAccessToken: async () => 'ya29.made-up' };
    const refused = await send(new VertexUpstream({ ...settings, endpoint: vertex.url }, made), {});
    expect(refused.status).toBe(401);
    expect(await refused.json()).toEqual({
      type: 'error',
      error: { type: 'authentication_error', message: expect.stringMatching(/^Vertex AI: Request had invalid authentication credentials/) },
    });
    const elsewhere = await send(new VertexUpstream({ ...settings, project: 'other-project', endpoint: vertex.url }), {});
    expect(elsewhere.status).toBe(403);
    expect(await elsewhere.json()).toMatchObject({
      type: 'error',
      error: { type: 'permission_error', message: expect.stringMatching(/^Vertex AI: /) },
    });
  });

  it('passes on only the betas Vertex takes: one it does not know would fail the whole call', async () => {
    const upstream = new VertexUpstream({ ...settings, endpoint: vertex.url });
    const betas = 'claude-code-20250219,advanced-tool-use-2025-11-20,effort-2025-11-24,per-turn-control-2026-07-01';
    const answer = await upstream.send({
      call: 'messages',
      beta: true,
      headers: { ...headers, 'anthropic-beta': betas },
      body: body({ model: MODEL, max_tokens: 10, messages }),
      signal: AbortSignal.timeout(10_000),
    });
    expect(answer.status).toBe(200);
    expect(vertex.requests.at(-1)?.betas).toBe('claude-code-20250219,effort-2025-11-24');
  });

  it("answers a refusal Vertex sends as a one-element array (a model not enabled) in the Messages API's shape", async () => {
    const strict = await startFakeVertex({ tokens: metadata, project: 'my-project-1', region: 'us-east5', enabledModels: ['claude-other@1'] });
    try {
      const refused = await send(new VertexUpstream({ ...settings, endpoint: strict.url }), {});
      expect(refused.status).toBe(400);
      expect(await refused.json()).toEqual({
        type: 'error',
        error: {
          type: 'invalid_request_error',
          message: expect.stringMatching(/^Vertex AI: Project `my-project-1` is not allowed to use Publisher Model/),
        },
      });
    } finally {
      await strict.close();
    }
  });

  it('answers 502 api_error naming ADC when no token can be had, logs it, and leaks no token', async () => {
    metadata.failTokens = true;
    try {
      const upstream = new VertexUpstream({ ...settings, endpoint: vertex.url });
      const before = vertex.requests.length;
      await expect(send(upstream, {})).rejects.toBeInstanceOf(UpstreamCredentialsError);
      expect(vertex.requests.length).toBe(before);
      // Through the proxy: a turn, the policy, and the sandbox's answer.
      const turn = { id: 'turn-1', userId: 'user-1' } as Turn;
      const service = { authenticateRunner: async () => turn, recordUsage: async () => {} } as unknown as RunnerService;
      const policy = { models: [MODEL], maxOutputTokens: 1000, maxCallsInFlight: 4, requestBytesPerMinute: 1e9 };
      const logs: string[] = [];
      const app = express().use(modelProxyRoutes(service, upstream, policy, new PolicyChecker(policy), (m) => logs.push(m)));
      const server = http.createServer(app);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const answer = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/internal/model/v1/messages?beta=true`, {
          method: 'POST',
          headers: { ...headers, 'x-api-key': 'turn-token' },
          body: JSON.stringify({ model: MODEL, max_tokens: 10, messages }),
        });
        expect(answer.status).toBe(502);
        const error = (await answer.json()) as { type: string; error: { type: string; message: string } };
        expect(error).toMatchObject({ type: 'error', error: { type: 'api_error' } });
        expect(error.error.message).toMatch(/Application Default Credentials/);
        expect(logs.join('\n')).toMatch(/turn-1: .*Application Default Credentials.*: /);
        for (const token of metadata.issued) expect(logs.join('\n')).not.toContain(token);
      } finally {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    } finally {
      metadata.failTokens = false;
    }
  });
});
