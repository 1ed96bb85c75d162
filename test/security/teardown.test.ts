import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCgroups } from '../../functions/src/sandbox/local/cgroups.js';
import { LocalSandboxLauncher } from '../../functions/src/sandbox/local/local-launcher.js';
import { projectRoot } from '../../functions/src/project-root.js';
import { locateRuntimeFiles } from '../../functions/src/sandbox/local/runtime-files.js';
import { seccompProgram } from '../../functions/src/sandbox/local/seccomp-filter.js';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { prompt, startService, type RunningService } from '../support/service.js';
import { FINAL_STATES, commandOutput, runCommand, turnOf } from '../support/in-sandbox.js';
import { sandboxNameOf } from '../support/sandbox-processes.js';

/**
 * Whatever a sandbox leaves behind, the host tears it down: deep trees, long names, fifos,
 * sockets, unreadable directories, setuid files, symlinks to the host. The service goes on.
 */
const HOSTILE_TREE = [
  'for d in /workspace /home/agent; do',
  '  cd "$d" || exit 1',
  `  perl -e 'for (1..3000) { mkdir "d" or die "mkdir: $!"; chdir "d" or die "chdir: $!" } open(F, ">", "leaf") or die; print F "x"' || exit 1`,
  '  mkfifo fifo',
  `  node -e "require('net').createServer().listen('sock', () => process.exit(0))"`,
  '  mkdir -p locked/inner && touch locked/inner/f && chmod 000 locked',
  `  mkdir "$(printf 'n%.0s' {1..250})"`,
  '  cp /bin/true suid && chmod 4755 suid',
  '  ln -s / rootlink',
  'done',
  'echo BUILT $(ls /workspace | wc -l)',
].join('\n');

describe('host-side teardown', () => {
  let fake: FakeAnthropic;
  let dataDir: string;
  let service: RunningService | undefined;
  const env = () => ({ ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url, CLAUDERUN_TURN_TIMEOUT_SECONDS: '60' });

  beforeAll(async () => {
    fake = await startFakeAnthropic();
    dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-teardown-'));
    service = await startService(env(), dataDir);
  });
  afterAll(async () => {
    await service?.stop();
    await fake?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('survives a deep tree, a fifo, a socket and a locked directory: the turn ends, the next works, so does a restart', async () => {
    const started = Date.now();
    const first = turnOf(await runCommand(service!, HOSTILE_TREE, { userId: 'tree' }));
    expect(FINAL_STATES, JSON.stringify(first)).toContain(first.status);
    expect(Date.now() - started).toBeLessThan(50_000);

    // The turn's sandbox is gone; a warm one, started for the next turn, may be there.
    const sandboxes = path.join(dataDir, 'sandboxes');
    const used = await sandboxNameOf(service!, 'tree', first.conversationId, first.turnId);
    await expect.poll(() => (existsSync(sandboxes) ? readdirSync(sandboxes) : []).includes(used), { timeout: 5000 }).toBe(false);

    const next = await commandOutput(service!, 'echo next-ok', { userId: 'tree', conversationId: first.conversationId });
    expect(next).toContain('next-ok');

    await service!.stop();
    service = undefined;
    // What an older version, a crash or a hostile sandbox may have left in the data dir.
    execFileSync('perl', ['-e', 'mkdir "left" or die; chdir "left" or die; for (1..3000) { mkdir "d" or die; chdir "d" or die }'], {
      cwd: sandboxes,
    });
    execFileSync('sh', ['-c', 'mkfifo left/fifo && mkdir -p left/locked/inner && chmod 000 left/locked && ln -s / left/rootlink'], {
      cwd: sandboxes,
    });
    service = await startService(env(), dataDir);
    expect(readdirSync(sandboxes)).not.toContain('left');
    const afterRestart = await prompt(service, 'tree', { message: 'hello again', conversationId: first.conversationId });
    expect(afterRestart.status, JSON.stringify(afterRestart.body)).toBe(200);
    expect(afterRestart.body.text).toBe('echo: hello again');
  });

  it("keeps the bridge out of the sandbox's reach: its directory and socket cannot be changed", async () => {
    const output = await commandOutput(
      service!,
      'touch /run/clauderun/planted; echo "touch=$?"; rm -f /run/clauderun/api.sock; echo "rm=$?"; chmod 777 /run/clauderun; echo "chmod=$?"; echo "ls=[$(ls /run/clauderun | tr \'\\n\' ,)]"',
    );
    expect(output).toMatch(/touch=1/);
    expect(output).toMatch(/rm=1/);
    expect(output).toMatch(/chmod=1/);
    expect(output).toContain('ls=[api.sock,]');
    // The socket still works: the turn that tried answered, and so does the next.
    expect(await commandOutput(service!, 'echo still-bridged')).toContain('still-bridged');
  });
});

describe('a sandbox that floods its stderr', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'clauderun-flood-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('reaches the service log only up to a cap, which says how much was dropped', async () => {
    const flood = path.join(dir, 'flood.mjs');
    await writeFile(
      flood,
      [
        "const line = 'flood '.repeat(20) + '\\n';",
        'for (let i = 0; i < 200000; i++) process.stderr.write(line);',
        "process.stderr.write('x'.repeat(5_000_000));",
        "process.stderr.write('\\n', () => process.exit(0));",
      ].join('\n'),
    );
    const lines: string[] = [];
    const launcher = await LocalSandboxLauncher.create({
      sandboxesDir: path.join(dir, 'sandboxes'),
      socketsDir: path.join(dir, 'sockets'),
      seccomp: seccompProgram(path.join(projectRoot(), 'scripts', 'seccomp-filter.py'), dir),
      connectApi: (inbound) => inbound.destroy(), // the flood needs no API
      limits: { memoryBytes: 512 * 1024 * 1024, cpus: 1, pids: 64 },
      disk: { diskBytes: 64 * 1024 * 1024, tmpBytes: 16 * 1024 * 1024, files: 1000 },
      runtime: { ...locateRuntimeFiles(), runner: flood },
      cgroups: await openCgroups(),
      runningAsRoot: process.getuid?.() === 0,
      systemPath: '/usr/local/bin:/usr/bin:/bin',
      log: (_turnId, line) => lines.push(line),
    });
    try {
      const handle = await launcher.launch({ turnId: randomUUID(), token: 'no-token', timeoutSeconds: 60 });
      const end = await handle.ended;
      expect(end).toMatchObject({ kind: 'exited', exitCode: 0 });
    } finally {
      await launcher.close();
    }
    expect(lines.length).toBeLessThanOrEqual(1001);
    expect(lines.reduce((sum, line) => sum + line.length, 0)).toBeLessThan(300 * 1024);
    expect(lines.at(-1)).toMatch(/dropped \d+ more lines? \(\d+ bytes\)/);
  });
});
