import { describe, expect, it } from 'vitest';
import { cutToLimit, headOf, tailOf } from '../../functions/src/contract/runner-limits.js';

// A lone surrogate is stored as U+FFFD by SQLite, kept by JSON and refused as UTF-8 elsewhere:
// a cut must never make one, or the stored turn and its result event disagree.
const wellFormed = (text: string) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);

describe('cutting what a runner sends to the contract limits', () => {
  const emoji = '\u{1F600}'; // two code units

  it('never splits a character at the head or the tail', () => {
    const text = `a${emoji.repeat(10)}`;
    for (let n = 0; n <= text.length + 1; n++) {
      for (const cut of [headOf(text, n), tailOf(text, n), cutToLimit(text, Math.max(n, 1))]) {
        expect(wellFormed(cut)).toBe(true);
        expect(cut.length).toBeLessThanOrEqual(Math.max(n, 1));
      }
    }
    expect(headOf(text, 2)).toBe('a');
    expect(tailOf(text, 3)).toBe(emoji);
  });

  it('keeps text that fits, and cuts what does not to the limit with an ellipsis', () => {
    expect(cutToLimit('short', 10)).toBe('short');
    expect(cutToLimit('x'.repeat(20), 10)).toBe(`${'x'.repeat(9)}…`);
  });
});
