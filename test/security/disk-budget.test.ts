import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { useServiceWithFake } from '../support/service.js';
import { FINAL_STATES, commandOutput, runCommand, startInSandbox, turnOf, turnStatus } from '../support/in-sandbox.js';

/** Bytes and files under a host directory, as du counts them (0 when it does not exist). */
function hostUsage(dir: string): { bytes: number; files: number } {
  try {
    const bytes = Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]);
    const files = execFileSync('find', [dir], { encoding: 'utf8' }).split('\n').filter(Boolean).length;
    return { bytes, files };
  } catch {
    return { bytes: 0, files: 0 };
  }
}

describe("the sandbox's disk, with the default budgets", () => {
  const running = useServiceWithFake({ CLAUDERUN_TURN_TIMEOUT_SECONDS: '60' });

  it('refuses writes past the disk budget with "No space left", and the turn still answers', async () => {
    const output = await commandOutput(
      running.service,
      'dd if=/dev/zero of=/workspace/fill bs=1M count=700 2>&1; dd if=/dev/zero of=/home/agent/fill bs=1M count=100 2>&1; ' +
        'df -m /workspace | tail -1; echo "after=$(du -sm /workspace | cut -f1)"; rm -f /workspace/fill /home/agent/fill',
    );
    expect(output).toContain('No space left on device');
    const after = Number(/after=(\d+)/.exec(output)?.[1]);
    expect(after).toBeLessThanOrEqual(512);
  });

  it("writes nothing to the host's disk under the data dir, however much the turn writes", async () => {
    const sandboxes = path.join(running.service.dataDir, 'sandboxes');
    const started = await startInSandbox(
      running.service,
      'mkdir -p /workspace/many && cd /workspace/many && perl -e \'for (1..5000) { open(F, ">", "f$_") or die; print F "x" x 1000 }\' && ' +
        "dd if=/dev/zero of=/workspace/big bs=1M count=300 2>/dev/null && dd if=/dev/zero of=/home/agent/big bs=1M count=100 2>/dev/null && echo WROTE && perl -e 'sleep 4'",
    );
    let most = { bytes: 0, files: 0 };
    // Until the turn is over: its state (300 MB of zeros, 5,000 files) is read and written anew by
    // the API as it is stored, which a loaded machine takes a while over; the turn's own timeout bounds it.
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline && !FINAL_STATES.includes(await turnStatus(running.service, started))) {
      const now = hostUsage(sandboxes);
      if (now.bytes > most.bytes) most = now;
      await sleep(200);
    }
    expect(FINAL_STATES).toContain(await turnStatus(running.service, started));
    expect(most.bytes).toBeLessThan(1024 * 1024);
    expect(most.files).toBeLessThan(50);
  });

  it('lets a tool fill /tmp and then allocate memory: /tmp is full, memory is left, the agent reports it', async () => {
    // The CLI keeps a command's output under /tmp too: what is printed while /tmp is full goes to
    // the workspace, and is shown once /tmp is emptied again.
    const answer = await runCommand(
      running.service,
      'dd if=/dev/zero of=/tmp/fill bs=1M count=2000 > /workspace/dd.log 2>&1; ' +
        'node -e "const b = Buffer.alloc(600e6, 1); console.log(\'ALLOCATED\', b.length)" > /workspace/node.log 2>&1; echo "EXIT=$?" >> /workspace/node.log; ' +
        'rm -f /tmp/fill; cat /workspace/dd.log /workspace/node.log',
    );
    const turn = turnOf(answer);
    if (turn.status !== 'succeeded') expect(turn.reason).toMatch(/out of memory/);
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(turn.text).toContain('No space left on device');
    // /tmp took at most its own budget of the sandbox's memory: the rest is there for the tool.
    expect(turn.text).toContain('ALLOCATED 600000000');
    expect((await fetch(`${running.service.url}/healthz`)).status).toBe(200);
  });
});

describe("the sandbox's file budget", () => {
  const running = useServiceWithFake({ CLAUDERUN_SANDBOX_FILES: '3000' });

  it('refuses files past the limit, in the workspace and in /tmp', async () => {
    const output = await commandOutput(
      running.service,
      'cd /workspace && perl -e \'for (1..5000) { open(F, ">", "f$_") or do { print "stopped at $_: $!\\n"; last } }\'; ' +
        'cd /tmp && perl -e \'for (1..5000) { open(F, ">", "f$_") or do { print "tmp stopped at $_: $!\\n"; last } }\'; ' +
        'echo "files=$(ls /workspace | wc -l)"; rm -f /workspace/f* /tmp/f*',
    );
    expect(output).toMatch(/stopped at \d+: No space left on device/);
    expect(output).toMatch(/tmp stopped at \d+: No space left on device/);
    expect(Number(/files=(\d+)/.exec(output)?.[1])).toBeLessThan(3000);
  });
});
