/** What a sandbox needs to run one turn: the runner learns everything else from the API. */
export interface SandboxSpec {
  turnId: string;
  token: string;
  timeoutSeconds: number;
}

/** A sandbox started before its turn (warm-pool.ts): it asks the API for the turn that claims it. */
export interface WarmSandboxSpec {
  sandboxId: string;
  /** Good only for asking for that turn (turn-token.ts, PoolTokens). */
  poolToken: string;
  /** How long it may wait for a turn and then run it, all told. */
  timeoutSeconds: number;
}

export type SandboxEnd = (
  | { kind: 'exited'; exitCode: number | null; signal: string | null; outOfMemory: boolean; detail?: string }
  | { kind: 'timed_out' }
  | { kind: 'cancelled' }
) & {
  /** When it ended, as its platform reports it (ms since the epoch), if it does. */
  at?: number;
};

export interface SandboxHandle {
  /** What names this sandbox to its launcher (a Cloud Run execution, a local directory). */
  readonly ref: string;
  /**
   * Settles once the sandbox and every process in it are gone, and never before. A sandbox that
   * outlives its launcher's close (sandboxesOutliveProcess) leaves it pending: another handle
   * (reattach) or status() tells its end.
   */
  readonly ended: Promise<SandboxEnd>;
  cancel(): Promise<void>;
}

export interface WarmSandboxHandle extends SandboxHandle {
  /**
   * A turn claimed it: from now on it may run `timeoutSeconds` more, the turn's limit, where the
   * launcher can change that (a local sandbox); a Cloud Run execution keeps the timeout it started
   * with, and the turn's deadline is held by the lifecycle.
   */
  claimed(timeoutSeconds: number): void;
}

/** Starts one isolated, resource-limited sandbox per turn. */
export interface SandboxLauncher {
  readonly name: string;
  /**
   * Whether a sandbox runs on when the process that started it stops (a Cloud Run execution
   * does; a local sandbox dies with its parent). A turn left unfinished by a stopped process is
   * then another instance's to watch, not a dead one.
   */
  readonly sandboxesOutliveProcess: boolean;
  launch(spec: SandboxSpec): Promise<SandboxHandle>;
  /** Starts a sandbox that holds no turn yet, set up in every other way as launch's; without it, no warm pool. */
  launchWarm?(spec: WarmSandboxSpec): Promise<WarmSandboxHandle>;
  /** A handle on a sandbox started before (by an earlier process), or undefined if it cannot have survived. */
  reattach(ref: string): SandboxHandle | undefined;
  /**
   * How the sandbox ended, asked once, without waiting: undefined while it runs, or when this
   * launcher cannot tell (yet: it was launched at `launchedAt`, ms since the epoch). Instances
   * that get no CPU between requests settle turns with this.
   */
  status(ref: string, launchedAt: number): Promise<SandboxEnd | undefined>;
  close(): Promise<void>;
}

/**
 * No sandbox can be had: isolation is missing here, or the platform refuses for now. The
 * message is for the operator (it may name host paths); `publicMessage` is what clients see.
 */
export class SandboxUnavailableError extends Error {
  override name = 'SandboxUnavailableError';

  constructor(
    message: string,
    readonly publicMessage = 'no sandbox is available right now; try again shortly',
  ) {
    super(message);
  }
}
