import { describe, expect, it } from 'vitest';
import { PoolTokens, TurnTokens } from '../../functions/src/conversations/turn-token.js';

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

describe('pool tokens', () => {
  const pool = new PoolTokens('a'.repeat(32));
  const poolClaims = { sandboxId: 'w1', exp: claims.exp };

  it('verify what they minted, and expire', () => {
    expect(pool.verify(pool.mint(poolClaims))).toEqual(poolClaims);
    expect(pool.verify(pool.mint(poolClaims), (poolClaims.exp + 1) * 1000)).toBeUndefined();
  });

  it('never pass as turn tokens, nor turn tokens as pool tokens, with the same secret', () => {
    const poolToken = pool.mint(poolClaims);
    expect(tokens.verify(poolToken)).toBeUndefined();
    expect(pool.verify(tokens.mint(claims))).toBeUndefined();
    // Given the other kind's prefix, a signature still does not fit: each kind signs in its own context.
    expect(tokens.verify(poolToken.replace(/^crp1\./, 'crt1.'))).toBeUndefined();
    const [, payload, signature] = tokens.mint({ ...claims, sandboxId: 'w1' } as typeof claims).split('.');
    expect(pool.verify(`crp1.${payload}.${signature}`)).toBeUndefined();
  });
});
