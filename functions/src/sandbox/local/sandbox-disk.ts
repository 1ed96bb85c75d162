import path from 'node:path';
import type { SandboxIdentity } from './sandbox-uids.js';

/**
 * Where a sandbox writes: kernel-limited tmpfs that exist only in the sandbox's own mount
 * namespace, so nothing of it reaches the host's disk and nothing is left for the host to
 * delete. Their pages are charged to the memory cgroup of whoever writes them (the sandbox),
 * as Cloud Run's in-memory filesystem is.
 */

export interface DiskLimits {
  /** Home and workspace together. */
  diskBytes: number;
  tmpBytes: number;
  /** Files (inodes) in each of the two; only where the service mounts them itself (root). */
  files: number;
}

/** How bwrap gets the sandbox's home, workspace and /tmp. */
export type SandboxStorage =
  /** Directories on tmpfs the launcher mounted in a private mount namespace, for bwrap to bind. */
  | { kind: 'mounted'; home: string; workspace: string; tmp: string }
  /** Without root, bwrap's own tmpfs (size only: bwrap sets no inode limit). */
  | { kind: 'bwrap'; homeBytes: number; workspaceBytes: number; tmpBytes: number };

/**
 * Mounts the two tmpfs over the (empty) host directories given, in the mount namespace that
 * `unshare` made for this sandbox alone, then execs the rest of the command line (bwrap).
 */
const MOUNT_AND_EXEC = `
set -e
disk=$1 tmp=$2 disk_options=$3 tmp_options=$4 owner=$5
shift 5
mount -t tmpfs -o "$disk_options" sandbox-disk "$disk"
mkdir -m 0755 "$disk/home" "$disk/workspace"
chown "$owner" "$disk/home" "$disk/workspace"
mount -t tmpfs -o "$tmp_options" sandbox-tmp "$tmp"
exec "$@"`;

export interface DiskPlan {
  storage: SandboxStorage;
  /** Runs before bwrap (which it then execs); empty when bwrap makes the tmpfs itself. */
  prefix: string[];
  /** Host directories to create (empty, owned by the service) before launching. */
  mountPoints: string[];
}

export function planDisk(limits: DiskLimits, turnDir: string, runningAsRoot: boolean, agent: SandboxIdentity): DiskPlan {
  if (!runningAsRoot) {
    // bwrap's tmpfs are made inside the sandbox and cannot be shared between two mount points:
    // the home gets a quarter of the budget (the agent's session files), the workspace the rest.
    const homeBytes = Math.floor(limits.diskBytes / 4);
    return {
      storage: { kind: 'bwrap', homeBytes, workspaceBytes: limits.diskBytes - homeBytes, tmpBytes: limits.tmpBytes },
      prefix: [],
      mountPoints: [],
    };
  }
  const disk = path.join(turnDir, 'disk');
  const tmp = path.join(turnDir, 'tmp');
  const options = (bytes: number, mode: string) => `size=${bytes},nr_inodes=${limits.files},mode=${mode},nosuid,nodev`;
  return {
    storage: { kind: 'mounted', home: path.join(disk, 'home'), workspace: path.join(disk, 'workspace'), tmp },
    prefix: [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '--',
      '/bin/sh',
      '-c',
      MOUNT_AND_EXEC,
      'sh',
      disk,
      tmp,
      options(limits.diskBytes, '0755'),
      options(limits.tmpBytes, '1777'),
      `${agent.uid}:${agent.gid}`,
    ],
    mountPoints: [disk, tmp],
  };
}

/** The settings (CLAUDERUN_SANDBOX_DISK_MB, _TMP_MB, _FILES) as the launcher takes them. */
export function diskLimitsOf(limits: { diskMb: number; tmpMb: number; files: number }): DiskLimits {
  const MiB = 1024 * 1024;
  return { diskBytes: limits.diskMb * MiB, tmpBytes: limits.tmpMb * MiB, files: limits.files };
}
