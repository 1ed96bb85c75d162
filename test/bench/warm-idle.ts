import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WarmSandbox } from '../../functions/src/domain/warm-sandbox.js';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';
import { sandboxCgroupDir, sandboxPids } from '../support/sandbox-processes.js';
import type { RunningService } from '../support/service.js';
import { line } from './report.js';

/** What one warm sandbox holds while it waits: the memory its cgroup is charged, and its processes' resident sets. */
export async function warmIdleCost(service: RunningService): Promise<void> {
  const store = new SqliteConversationStore(path.join(service.dataDir, 'clauderun.db'));
  try {
    let waiting: WarmSandbox | undefined;
    for (let i = 0; i < 200 && waiting === undefined; i++) {
      waiting = (await store.listWarmSandboxes()).find((w) => w.turnId === null && w.seenAt !== null);
      if (waiting === undefined) await sleep(50);
    }
    if (waiting === undefined) {
      line('warm idle', 'no warm sandbox was ready to measure');
      return;
    }
    // Settled: the runner has asked for its turn and waits.
    await sleep(1000);
    const rssKib = sandboxPids(waiting.id).reduce((sum, pid) => {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      return sum + Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0);
    }, 0);
    const memoryDir = sandboxCgroupDir(waiting.id, 'memory');
    const chargedFile =
      memoryDir === undefined ? undefined : [path.join(memoryDir, 'memory.usage_in_bytes'), path.join(memoryDir, 'memory.current')].find(existsSync);
    const charged = chargedFile === undefined ? 'n/a' : `${(Number(readFileSync(chargedFile, 'utf8')) / 1024 ** 2).toFixed(1)} MiB`;
    line('warm idle', `one warm sandbox holds ${(rssKib / 1024).toFixed(1)} MiB resident (its processes), ${charged} charged to its memory cgroup`);
  } finally {
    await store.close();
  }
}
