import { AGENT_USER } from '../../contract/sandbox-layout.js';
import { dataDirTag } from './sandbox-paths.js';

/** Who the agent is in one sandbox: its uid and gid, inside and (as root) on the host. */
export interface SandboxIdentity {
  uid: number;
  gid: number;
}

/** Without root, a user namespace maps the sandbox's uid to the service's own: always this one. */
export const USER_NAMESPACE_IDENTITY: SandboxIdentity = { uid: AGENT_USER.uid, gid: AGENT_USER.gid };

/** Sandboxes of one service that can run at once, each with a uid of its own. */
const SLOTS = 1000;
const FIRST_BASE = 200_000;
const BASES = 700;

/**
 * As root, every running sandbox gets a host uid of its own, from a range no login account
 * uses. The kernel counts some limits per uid, not per cgroup or namespace (inotify instances
 * and watches, pipe buffers, signal queues): with one uid for all, one tenant's sandbox could
 * use them up for every other, and a host account with that uid could read sandboxes' memory.
 * The range is chosen by the data dir, so that services on one machine rarely share one.
 */
export class SandboxUids {
  private readonly base: number;
  private readonly taken = new Set<number>();

  constructor(sandboxesDir: string) {
    this.base = FIRST_BASE + (parseInt(dataDirTag(sandboxesDir).slice(0, 8), 16) % BASES) * SLOTS;
  }

  take(): SandboxIdentity {
    for (let slot = 0; slot < SLOTS; slot++) {
      const uid = this.base + slot;
      if (this.taken.has(uid)) continue;
      this.taken.add(uid);
      return { uid, gid: uid };
    }
    throw new Error(`all ${SLOTS} sandbox uids of this service are in use`);
  }

  give(identity: SandboxIdentity): void {
    this.taken.delete(identity.uid);
  }
}
