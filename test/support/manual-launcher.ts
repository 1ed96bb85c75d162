import type { SandboxEnd, SandboxHandle, SandboxLauncher, SandboxSpec } from '../../functions/src/sandbox/launcher.js';

export interface ManualSandbox {
  spec: SandboxSpec;
  /** Ends the sandbox as the test says: exited, timed out or cancelled. */
  end(how: SandboxEnd): void;
}

/**
 * A launcher that starts nothing: the test plays the runner over HTTP with the token it is
 * handed, and decides how and when each sandbox ends. For the turn protocol's edge cases.
 */
export class ManualLauncher implements SandboxLauncher {
  readonly name = 'manual';
  readonly sandboxes: ManualSandbox[] = [];

  async launch(spec: SandboxSpec): Promise<SandboxHandle> {
    let end: (how: SandboxEnd) => void = () => {};
    const ended = new Promise<SandboxEnd>((resolve) => (end = resolve));
    this.sandboxes.push({ spec, end });
    return { ref: `manual:${spec.turnId}`, ended, cancel: async () => end({ kind: 'cancelled' }) };
  }

  reattach(): undefined {
    return undefined;
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
