import type { ChildProcess, StdioPipe } from 'node:child_process';
import type { Writable } from 'node:stream';

/**
 * Data handed to bwrap on inherited file descriptors instead of its command line, which every
 * host user can read (`ps`) and so can the sandbox (/proc/1/cmdline is bwrap's): its arguments
 * with the turn token among them, the seccomp program, the files of the sandbox's /etc.
 */
export class FdInputs {
  /** fd 3 carries bwrap's arguments (`bwrap --args 3`); the data they name follows. */
  static readonly ARGS_FD = 3;
  private readonly data: Buffer[] = [];

  /** The descriptor bwrap will read `content` from. */
  add(content: string | Buffer): number {
    this.data.push(Buffer.from(content));
    return FdInputs.ARGS_FD + this.data.length;
  }

  /** stdio for spawn: stdin closed, stdout and stderr piped, then one pipe per input. */
  stdio(): Array<'ignore' | StdioPipe> {
    return ['ignore', 'pipe', 'pipe', 'pipe', ...this.data.map((): StdioPipe => 'pipe')];
  }

  /** Writes the arguments and every input to the child, each closed after its data. */
  feed(child: ChildProcess, args: string[], onError: (error: Error) => void): void {
    const all = [Buffer.from(args.map((arg) => `${arg}\0`).join('')), ...this.data];
    all.forEach((content, index) => {
      const pipe = child.stdio[FdInputs.ARGS_FD + index] as Writable | null | undefined;
      // A sandbox that fails before reading its inputs closes them: that is its failure, not ours.
      pipe?.once('error', onError);
      pipe?.end(content);
    });
  }
}
