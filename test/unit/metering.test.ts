import { describe, expect, it } from 'vitest';
import { UsageMeter } from '../../functions/src/model/metering.js';
import { encodeMessageJson, encodeMessageStream } from '../../functions/src/model/messages-sse.js';
import { costUsd } from '../../functions/src/model/pricing.js';

const message = (inputTokens: number, outputTokens: number) => ({
  id: 'msg_1',
  model: 'claude-sonnet-4-5',
  content: [{ type: 'text' as const, text: 'hello' }],
  inputTokens,
  outputTokens,
});

describe('usage metering at the model proxy', () => {
  it('reads input and output tokens from a stream split at arbitrary points', () => {
    const stream = encodeMessageStream(message(1200, 34)).join('') + encodeMessageStream(message(1300, 8)).join('');
    const meter = new UsageMeter();
    for (let i = 0; i < stream.length; i += 7) meter.pushSse(stream.slice(i, i + 7));
    expect(meter.result()).toEqual({
      model: 'claude-sonnet-4-5',
      usage: { inputTokens: 2500, outputTokens: 42, cacheCreationInputTokens: 0, cacheReadInputTokens: 0, modelCalls: 2 },
    });
  });

  it('reads a non-streaming answer', () => {
    const meter = new UsageMeter();
    meter.pushJson(JSON.stringify(encodeMessageJson(message(10, 5))));
    expect(meter.result().usage).toMatchObject({ inputTokens: 10, outputTokens: 5, modelCalls: 1 });
  });

  it('ignores what is not a Messages API answer', () => {
    const meter = new UsageMeter();
    meter.pushSse('data: not json\n\ndata: {"type":"message_delta","usage":{"output_tokens":-4}}\n\n');
    meter.pushJson('<html>');
    expect(meter.result().usage.modelCalls).toBe(0);
    expect(meter.result().usage.outputTokens).toBe(0);
  });

  it('prices by model family, prices unknown models high and the demo model at zero', () => {
    const usage = { inputTokens: 1_000_000, outputTokens: 1_000_000, cacheCreationInputTokens: 0, cacheReadInputTokens: 0, modelCalls: 1 };
    expect(costUsd('claude-sonnet-4-5', usage, 1)).toBe(18);
    expect(costUsd('claude-haiku-4-5', usage, 1)).toBe(6);
    expect(costUsd('mystery-model', usage, 1)).toBe(90);
    expect(costUsd('claude-sonnet-4-5', usage, 0)).toBe(0);
  });
});
