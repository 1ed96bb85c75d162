import type { SandboxEnd, SandboxHandle, SandboxLauncher, SandboxSpec } from '../../functions/src/sandbox/launcher.js';

export interface ManualSandbox {
  spec: SandboxSpec;
  /** Ends the sandbox as the test says: exited, timed out or cancelled. */
  end(how: SandboxEnd): void;
  /**
   * Ends it as only its platform sees: `status` reports the end, but the handle's `ended` never
   * settles, as when the instance that follows it gets no CPU (or is gone).
   */
  vanish(how: SandboxEnd): void;
}

/**
 * A launcher that starts nothing: the test plays the runner over HTTP with the token it is
 * handed, and decides how and when each sandbox ends. For the turn protocol's edge cases.
 */
export class ManualLauncher implements SandboxLauncher {
  readonly name = 'manual';
  readonly sandboxes: ManualSandbox[] = [];
  private readonly ends = new Map<string, SandboxEnd>();

  /**
   * `stopsWhenTold`: a stop (cancel) only asks; the sandbox is gone when the test ends it, as a
   * Cloud Run execution takes its time to stop.
   */
  constructor(
    readonly sandboxesOutliveProcess = false,
    private readonly stopsWhenTold = false,
  ) {}

  async launch(spec: SandboxSpec): Promise<SandboxHandle> {
    const ref = `manual:${spec.turnId}`;
    let resolve: (how: SandboxEnd) => void = () => {};
    const ended = new Promise<SandboxEnd>((r) => (resolve = r));
    const end = (how: SandboxEnd) => {
      this.ends.set(ref, how);
      resolve(how);
    };
    this.sandboxes.push({ spec, end, vanish: (how) => this.ends.set(ref, how) });
    return { ref, ended, cancel: async () => (this.stopsWhenTold ? undefined : end({ kind: 'cancelled' })) };
  }

  reattach(): undefined {
    return undefined;
  }

  async status(ref: string): Promise<SandboxEnd | undefined> {
    return this.ends.get(ref);
  }

  last(): ManualSandbox {
    const sandbox = this.sandboxes.at(-1);
    if (sandbox === undefined) throw new Error('nothing was launched');
    return sandbox;
  }

  async close(): Promise<void> {
    for (const sandbox of this.sandboxes) sandbox.end({ kind: 'cancelled' });
  }
}
