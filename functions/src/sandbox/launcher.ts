/** What a sandbox needs to run one turn: the runner learns everything else from the API. */
export interface SandboxSpec {
  turnId: string;
  token: string;
  timeoutSeconds: number;
}

export type SandboxEnd =
  | { kind: 'exited'; exitCode: number | null; signal: string | null; outOfMemory: boolean }
  | { kind: 'timed_out' }
  | { kind: 'cancelled' };

export interface SandboxHandle {
  /** Settles once the sandbox and every process in it are gone. */
  readonly ended: Promise<SandboxEnd>;
  cancel(): Promise<void>;
}

/** Starts one isolated, resource-limited sandbox per turn. */
export interface SandboxLauncher {
  readonly name: string;
  launch(spec: SandboxSpec): Promise<SandboxHandle>;
  close(): Promise<void>;
}

export class SandboxUnavailableError extends Error {
  override name = 'SandboxUnavailableError';
}
