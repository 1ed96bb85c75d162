import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

/**
 * The credentials a sandbox holds, signed with the service's token secret:
 * - a turn token, bound to one turn, its conversation and user, expiring at the turn's deadline;
 *   "void once the turn is final" is checked by the caller against the store, because a
 *   signature cannot know about it;
 * - a pool token, held by a warm sandbox before any turn: bound to that one sandbox, it can do
 *   nothing but ask for the turn that claims it (warm-pool.ts).
 */

const TurnClaimsSchema = z.object({ v: z.literal(1), turnId: z.string(), conversationId: z.string(), userId: z.string(), exp: z.number() });
export type TurnClaims = Omit<z.infer<typeof TurnClaimsSchema>, 'v'>;

const PoolClaimsSchema = z.object({ v: z.literal(1), sandboxId: z.string(), exp: z.number() });
export type PoolClaims = Omit<z.infer<typeof PoolClaimsSchema>, 'v'>;

/**
 * Tokens of one kind: `prefix` names the kind, and `context` goes into the signature, so that
 * no token of one kind verifies as another (turn tokens sign their payload alone, as they always
 * did; a payload is base64url, so it can never begin with another kind's context, which holds a dot).
 */
class SignedTokens<Claims extends { exp: number }> {
  constructor(
    private readonly secret: string,
    private readonly prefix: string,
    private readonly context: string,
    private readonly schema: z.ZodType<Claims & { v: 1 }>,
  ) {}

  mint(claims: Claims): string {
    const payload = Buffer.from(JSON.stringify({ v: 1, ...claims })).toString('base64url');
    return `${this.prefix}${payload}.${this.sign(payload)}`;
  }

  /** The claims of a valid, unexpired token, or undefined. */
  verify(token: string, nowMs: number = Date.now()): Claims | undefined {
    if (!token.startsWith(this.prefix)) return undefined;
    const [payload, signature, ...rest] = token.slice(this.prefix.length).split('.');
    if (payload === undefined || signature === undefined || rest.length > 0) return undefined;
    const expected = Buffer.from(this.sign(payload));
    const given = Buffer.from(signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    let json: unknown;
    try {
      json = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    const parsed = this.schema.safeParse(json);
    if (!parsed.success || parsed.data.exp * 1000 <= nowMs) return undefined;
    const { v: _version, ...claims } = parsed.data;
    // The schema's object less its version is Claims.
    return claims as unknown as Claims;
  }

  private sign(payload: string): string {
    return createHmac('sha256', this.secret)
      .update(this.context + payload)
      .digest('base64url');
  }
}

export class TurnTokens extends SignedTokens<TurnClaims> {
  constructor(secret: string) {
    super(secret, 'crt1.', '', TurnClaimsSchema);
  }
}

export class PoolTokens extends SignedTokens<PoolClaims> {
  constructor(secret: string) {
    super(secret, 'crp1.', 'crp1.', PoolClaimsSchema);
  }
}
