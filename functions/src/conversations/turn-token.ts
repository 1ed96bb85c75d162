import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

/**
 * Per-turn tokens: the only credential a sandbox holds. A token is bound to one turn, its
 * conversation and user, and expires at the turn's deadline. "Void once the turn is final" is
 * checked by the caller against the store, because a signature cannot know about it.
 */

const Claims = z.object({ v: z.literal(1), turnId: z.string(), conversationId: z.string(), userId: z.string(), exp: z.number() });
export type TurnClaims = Omit<z.infer<typeof Claims>, 'v'>;

const PREFIX = 'crt1.';

export class TurnTokens {
  constructor(private readonly secret: string) {}

  mint(claims: TurnClaims): string {
    const payload = Buffer.from(JSON.stringify({ v: 1, ...claims })).toString('base64url');
    return `${PREFIX}${payload}.${this.sign(payload)}`;
  }

  /** The claims of a valid, unexpired token, or undefined. */
  verify(token: string, nowMs: number = Date.now()): TurnClaims | undefined {
    if (!token.startsWith(PREFIX)) return undefined;
    const [payload, signature, ...rest] = token.slice(PREFIX.length).split('.');
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
    const claims = Claims.safeParse(json);
    if (!claims.success || claims.data.exp * 1000 <= nowMs) return undefined;
    const { v: _version, ...rest2 } = claims.data;
    return rest2;
  }

  private sign(payload: string): string {
    return createHmac('sha256', this.secret).update(payload).digest('base64url');
  }
}
