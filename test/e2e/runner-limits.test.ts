import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRunnerOnHost } from '../support/host-runner.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { call, linkPath, prompt, startService, type RunningService } from '../support/service.js';

/**
 * What the runner sends stays within what the API takes (contract/runner.ts): a result the API
 * refuses is lost, and the turn with it. The agent here is a stand-in `claude` that fails as the
 * real one can, with more to say on stderr than a result's reason may hold.
 */
describe('the runner keeps its result within the contract', () => {
  const launcher = new ManualLauncher();
  let service: RunningService;
  let binDir: string;
  beforeAll(async () => {
    service = await startService({}, undefined, { launcher });
    binDir = await mkdtemp(path.join(tmpdir(), 'clauderun-failing-agent-'));
    const claude = path.join(binDir, 'claude');
    // Reads its prompt, then dies without a result, its last words over 5,000 characters long.
    await writeFile(claude, `#!/bin/sh\ncat >/dev/null\nhead -c 5000 /dev/zero | tr '\\0' 'x' >&2\necho ' out of disk' >&2\nexit 3\n`);
    await chmod(claude, 0o755);
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    if (binDir !== undefined) await rm(binDir, { recursive: true, force: true });
  });

  it('fails a turn whose agent dies with a very long error with (the end of) that error, not with a lost result', async () => {
    const started = await prompt(service, 'verbose', { message: 'hello' }, { prefer: 'respond-async' });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const { spec } = launcher.last();
    const exit = await runRunnerOnHost({ apiUrl: service.internalUrl, turnId: spec.turnId, token: spec.token, timeoutMs: 30_000, binDir });
    expect(exit, exit.stderr).toMatchObject({ code: 0 });
    const turnLink = linkPath((started.body.links as { turn: string }).turn);
    const turn = (await call(service, 'GET', turnLink, { userId: 'verbose' })).body;
    // What the agent said last is what tells why: the reason keeps the end of it.
    expect(turn).toMatchObject({
      status: 'failed',
      reason: expect.stringMatching(/^the agent exited with code 3 without a result: x+ out of disk$/),
    });
    expect(String(turn.reason).length).toBeLessThanOrEqual(2000);
  });
});
