import { z } from 'zod';

/** Turn states; the machine that moves between them lives in domain/turn-state.ts. */
export const TurnStatus = z.enum(['queued', 'starting', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out']);
export type TurnStatus = z.infer<typeof TurnStatus>;

/** Tokens as metered by the model proxy (the sandbox's own figures are never trusted). */
export const Usage = z.object({
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
  cacheCreationInputTokens: z.number().int().nonnegative(),
  cacheReadInputTokens: z.number().int().nonnegative(),
  modelCalls: z.number().int().nonnegative(),
});
export type Usage = z.infer<typeof Usage>;

export const emptyUsage = (): Usage => ({
  inputTokens: 0,
  outputTokens: 0,
  cacheCreationInputTokens: 0,
  cacheReadInputTokens: 0,
  modelCalls: 0,
});
