import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeMetadataServer, type FakeMetadataServer } from '../fixtures/fake-metadata-server.js';
import { startFakeVertex, type FakeVertex } from '../fixtures/fake-vertex.js';
import { outputOf, runScript, SANDBOX_PRELUDE } from '../support/in-sandbox.js';
import { prompt, startService, type RunningService } from '../support/service.js';

const PROJECT = 'clauderun-vertex-test';
const REGION = 'us-east5';
const MODEL = 'claude-sonnet-4-5@20250929';
const SMALL_MODEL = 'claude-haiku-4-5@20251001';
const VERTEX_PATH = new RegExp(
  `^/v1/projects/${PROJECT}/locations/${REGION}/publishers/anthropic/models/(claude-sonnet-4-5@20250929:(streamRawPredict|rawPredict)|claude-haiku-4-5@20251001:(streamRawPredict|rawPredict)|count-tokens:rawPredict)$`,
);

/**
 * The real Claude Code CLI in the sandbox, its model calls answered by Claude on Vertex AI (the
 * stand-in), with access tokens the service takes from the metadata server as on Cloud Run,
 * and no model key anywhere.
 */
describe('a turn through Claude on Vertex AI, with Application Default Credentials from the metadata server', () => {
  let metadata: FakeMetadataServer;
  let vertex: FakeVertex;
  let service: RunningService;
  let restoreEnv: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    // google-auth-library renews a token 5 minutes before it expires: one of 301 s is renewed after a second.
    metadata = await startFakeMetadataServer({ projectId: PROJECT, expiresInSeconds: 301 });
    vertex = await startFakeVertex({ tokens: metadata, project: PROJECT, region: REGION });
    // The service's own credentials come from this process's environment: the metadata stand-in
    // alone, never a key file or a gcloud login of this machine.
    restoreEnv = await metadata.useForThisProcess({ ANTHROPIC_API_KEY: '' });
    service = await startService({
      CLAUDERUN_MODEL_UPSTREAM: 'vertex',
      CLAUDERUN_VERTEX_PROJECT: PROJECT,
      CLAUDERUN_VERTEX_REGION: REGION,
      CLAUDERUN_VERTEX_ENDPOINT: vertex.url,
      CLAUDERUN_MODEL: MODEL,
      CLAUDERUN_SMALL_FAST_MODEL: SMALL_MODEL,
    });
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await restoreEnv?.();
    await vertex?.close();
    await metadata?.close();
  });

  it('answers, meters the usage, and calls only Vertex paths with tokens of the metadata server, renewed as they expire', async () => {
    const first = await prompt(service, 'vera', { message: 'hello vertex' });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body).toMatchObject({ status: 'succeeded', text: 'echo: hello vertex' });
    const usage = first.body.usage as Record<string, number>;
    expect(usage.modelCalls).toBeGreaterThanOrEqual(1);
    expect(usage.inputTokens).toBeGreaterThan(0);
    expect(usage.outputTokens).toBeGreaterThan(0);
    expect(first.body.costUsd).toBeGreaterThan(0);
    const tokensOfFirst = new Set(vertex.calls.map((c) => c.token));

    await sleep(1200);
    const second = await prompt(service, 'vera', { message: 'and again', conversationId: first.body.conversationId });
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    expect(second.body.text).toBe('echo: and again');

    expect(vertex.requests.length).toBeGreaterThan(1);
    for (const request of vertex.requests) {
      expect(request.url).toMatch(VERTEX_PATH);
      expect(request.status, request.body.slice(0, 300)).toBe(200);
      expect(request.versionHeader).toBeUndefined();
      expect(metadata.issued).toContain(request.token);
      // The CLI was told to leave its experimental betas out (and the fields that go with them).
      for (const beta of (request.betas ?? '').split(',').filter((b) => b !== '')) {
        expect(['claude-code-20250219', 'interleaved-thinking-2025-05-14', 'effort-2025-11-24']).toContain(beta);
      }
      expect(JSON.parse(request.body)).not.toHaveProperty('context_management');
    }
    expect(vertex.calls.some((c) => c.model === MODEL && c.kind === 'streamRawPredict')).toBe(true);
    // The second turn called with a token the first never used: the expired one was replaced.
    const tokensOfSecond = vertex.calls.map((c) => c.token).filter((t) => !tokensOfFirst.has(t));
    expect(tokensOfSecond.length).toBeGreaterThan(0);
    expect(metadata.issued.length).toBeGreaterThanOrEqual(2);
  });

  it('still refuses a model outside CLAUDERUN_MODELS before Vertex, and counts tokens through it', async () => {
    const before = vertex.requests.length;
    const script = `${SANDBOX_PRELUDE}
(async () => {
  const headers = { 'x-api-key': token, 'anthropic-version': '2023-06-01' };
  const messages = [{ role: 'user', content: 'hi' }];
  const other = await call('POST', '/internal/model/v1/messages', { headers, body: { model: 'claude-opus-4-1@20250805', max_tokens: 10, messages } });
  console.log('OTHER', other.status, other.text.slice(0, 200));
  const counted = await call('POST', '/internal/model/v1/messages/count_tokens?beta=true', { headers, body: { model: ${JSON.stringify(MODEL)}, messages } });
  console.log('COUNT', counted.status, counted.text);
})();`;
    const output = outputOf(await runScript(service, script, { userId: 'vera-probe' }));
    expect(output).toMatch(/OTHER 400 .*invalid_request_error.*not allowed/);
    expect(output).toMatch(/COUNT 200 \{"input_tokens":\d+\}/);
    const reached = vertex.requests.slice(before);
    expect(reached.some((r) => r.url.includes('claude-opus-4-1'))).toBe(false);
    expect(reached.filter((r) => r.url.endsWith('/count-tokens:rawPredict'))).toHaveLength(1);
    expect(vertex.calls.find((c) => c.kind === 'count-tokens')).toMatchObject({ model: MODEL });
  });
});
