import type { Usage } from '../contract/turn.js';

/** US dollars per million tokens, by model family (public list prices). */
interface Price {
  input: number;
  output: number;
  cacheWrite: number;
  cacheRead: number;
}

const PRICES: ReadonlyArray<[family: RegExp, price: Price]> = [
  [/opus-4-[5-9]|opus-[5-9]/, { input: 5, output: 25, cacheWrite: 6.25, cacheRead: 0.5 }],
  [/opus/, { input: 15, output: 75, cacheWrite: 18.75, cacheRead: 1.5 }],
  [/haiku-4|haiku-[5-9]/, { input: 1, output: 5, cacheWrite: 1.25, cacheRead: 0.1 }],
  [/haiku/, { input: 0.8, output: 4, cacheWrite: 1, cacheRead: 0.08 }],
  [/sonnet/, { input: 3, output: 15, cacheWrite: 3.75, cacheRead: 0.3 }],
];
/** Unknown models are priced as the most expensive family, so a budget is never under-counted. */
const FALLBACK: Price = { input: 15, output: 75, cacheWrite: 18.75, cacheRead: 1.5 };

/**
 * What a call costs at list prices, times the upstream's `priceFactor` (ModelUpstream: 0 for the
 * demo model, 1 for the Claude API and Vertex AI's global endpoint, 1.1 for its regional ones).
 * The families match Vertex AI's model ids too (`claude-sonnet-4-5@20250929`).
 */
export function costUsd(model: string | undefined, usage: Usage, priceFactor: number): number {
  if (priceFactor === 0) return 0;
  const price = PRICES.find(([family]) => model !== undefined && family.test(model))?.[1] ?? FALLBACK;
  const dollars =
    ((usage.inputTokens * price.input +
      usage.outputTokens * price.output +
      usage.cacheCreationInputTokens * price.cacheWrite +
      usage.cacheReadInputTokens * price.cacheRead) *
      priceFactor) /
    1_000_000;
  return Math.round(dollars * 1e6) / 1e6;
}
