import { describe, expect, it } from 'vitest';
import { TurnTokens } from '../../functions/src/conversations/turn-token.js';

const claims = { turnId: 't1', conversationId: 'c1', userId: 'u1', exp: Math.floor(Date.now() / 1000) + 60 };
const tokens = new TurnTokens('a'.repeat(32));

describe('turn tokens', () => {
  it('verify what they minted', () => {
    expect(tokens.verify(tokens.mint(claims))).toEqual(claims);
  });

  it('are refused once expired', () => {
    expect(tokens.verify(tokens.mint(claims), (claims.exp + 1) * 1000)).toBeUndefined();
  });

  it('are refused when signed with another secret', () => {
    expect(new TurnTokens('b'.repeat(32)).verify(tokens.mint(claims))).toBeUndefined();
  });

  it('are refused when the claims are altered', () => {
    const [prefix, , signature] = tokens.mint(claims).split('.');
    const forged = Buffer.from(JSON.stringify({ v: 1, ...claims, turnId: 't2' })).toString('base64url');
    expect(tokens.verify(`${prefix}.${forged}.${signature}`)).toBeUndefined();
  });

  it.each(['', 'crt1.', 'crt1.a.b.c', 'sk-ant-real-key', 'crt1.!!!.???'])('refuse garbage %j', (garbage) => {
    expect(tokens.verify(garbage)).toBeUndefined();
  });
});
