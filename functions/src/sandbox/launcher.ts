/** What a sandbox needs to run one turn: the runner learns everything else from the API. */
export interface SandboxSpec {
  turnId: string;
  token: string;
  timeoutSeconds: number;
}

export type SandboxEnd =
  | { kind: 'exited'; exitCode: number | null; signal: string | null; outOfMemory: boolean; detail?: string }
  | { kind: 'timed_out' }
  | { kind: 'cancelled' };

export interface SandboxHandle {
  /** What names this sandbox to its launcher (a Cloud Run execution, a local directory). */
  readonly ref: string;
  /** Settles once the sandbox and every process in it are gone. */
  readonly ended: Promise<SandboxEnd>;
  cancel(): Promise<void>;
}

/** Starts one isolated, resource-limited sandbox per turn. */
export interface SandboxLauncher {
  readonly name: string;
  launch(spec: SandboxSpec): Promise<SandboxHandle>;
  /** A handle on a sandbox started before (by an earlier process), or undefined if it cannot have survived. */
  reattach(ref: string): SandboxHandle | undefined;
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
