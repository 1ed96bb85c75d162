import { z } from 'zod';

/**
 * A sandbox started before its turn: it holds no turn and no token until a turn claims it, and
 * serves that one turn only. Both stores parse what they read with this schema.
 */
export const WarmSandboxRecord = z.object({
  /** What its pool credential is bound to (turn-token.ts, PoolTokens). */
  id: z.string(),
  /** The launcher's name for it (a Cloud Run execution, a local directory); null until its launch returns. */
  ref: z.string().nullable(),
  createdAt: z.string(),
  /** Its runner last asked for a turn at this time: until it first does, it is not ready to be claimed. */
  seenAt: z.string().nullable(),
  /** Past this it takes no turn: its runner is told to stop. */
  expiresAt: z.string(),
  /** The turn that claimed it; set once, in the same transaction that moves the turn to `starting`. */
  turnId: z.string().nullable(),
});
export type WarmSandbox = z.infer<typeof WarmSandboxRecord>;

/** What changes of a warm sandbox after it is added (the claim sets turnId, and nothing else does). */
export type WarmSandboxPatch = Partial<Pick<WarmSandbox, 'ref' | 'seenAt'>>;

/**
 * How recently a warm sandbox's runner must have asked for a turn for one to be given to it: it
 * asks again at least this often (the claim route's long poll), so one that has not is gone.
 */
export const WARM_READY_WINDOW_MS = 60_000;
/**
 * A warm sandbox this close to its expiry is not claimed: its runner may be told to stop (by an
 * instance whose clock runs a little ahead) before it hears of the turn.
 */
export const WARM_EXPIRY_MARGIN_MS = 5_000;

/** Whether a turn may claim the sandbox at `now`: ready, not claimed, not about to expire. */
export function claimable(sandbox: WarmSandbox, now: Date): boolean {
  if (sandbox.turnId !== null || sandbox.ref === null || sandbox.seenAt === null) return false;
  const t = now.getTime();
  return t - Date.parse(sandbox.seenAt) < WARM_READY_WINDOW_MS && Date.parse(sandbox.expiresAt) - t > WARM_EXPIRY_MARGIN_MS;
}

/** Whether the sandbox still counts as waiting for a turn (ready or still starting), not claimed nor expired. */
export const idle = (sandbox: WarmSandbox, now: Date): boolean => sandbox.turnId === null && Date.parse(sandbox.expiresAt) > now.getTime();

/** The sandboxes a claim may take, in the order it takes them: the oldest first (the first to expire). */
export function claimableInOrder(sandboxes: readonly WarmSandbox[], now: Date): WarmSandbox[] {
  return sandboxes.filter((sandbox) => claimable(sandbox, now)).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
}

/** The sandbox a claim takes. */
export const firstClaimable = (sandboxes: readonly WarmSandbox[], now: Date): WarmSandbox | undefined => claimableInOrder(sandboxes, now)[0];
