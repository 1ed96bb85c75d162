import { afterAll, describe, expect, it } from 'vitest';
import { PolicyChecker } from '../../functions/src/model/policy-checker.js';
import { checkModelRequest } from '../../functions/src/model/proxy-policy.js';

const policy = { models: ['claude-opus-5-5'], maxOutputTokens: 1000, maxCallsInFlight: 8, requestBytesPerMinute: 1e9 };
const body = (extra: Record<string, unknown>) =>
  Buffer.from(
    JSON.stringify({
      model: 'claude-opus-5-5',
      max_tokens: 10,
      messages: Array.from({ length: 40_000 }, () => ({ role: 'user', content: 'hi there' })),
      ...extra,
    }),
  );

describe("checking model requests off the API's thread", () => {
  const checker = new PolicyChecker(policy);
  afterAll(() => checker.close());

  it('gives a large body the same verdict in its worker as inline, accepted or refused, many at once', async () => {
    const accepted = body({});
    const refused = body({ container: 'c' });
    expect(accepted.length).toBeGreaterThan(1024 * 1024);
    const verdicts = await Promise.all([
      checker.check('messages', accepted),
      checker.check('messages', refused),
      checker.check('messages', accepted),
    ]);
    expect(verdicts).toEqual([
      checkModelRequest('messages', accepted, policy),
      checkModelRequest('messages', refused, policy),
      checkModelRequest('messages', accepted, policy),
    ]);
    expect(verdicts[1]).toMatchObject({ ok: false, message: expect.stringMatching(/container/) });
  });

  it('checks a small body at once', async () => {
    expect(await checker.check('count_tokens', Buffer.from('{"model":"claude-opus-5-5","messages":[]}'))).toMatchObject({ ok: true, maxTokens: 0 });
  });
});
