import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../functions/src/project-root.js';
import { prompt, useServiceWithFake, type RunningService } from '../support/service.js';
import { sandboxCgroupDir, sandboxNameOf } from '../support/sandbox-processes.js';

const TIMEOUT_SECONDS = 8;
/** The CLI refuses a plain `sleep N`; a process that waits is what matters. */
const WAIT_A_MINUTE = 'node -e "setTimeout(() => console.log(\'woke\'), 60000)"';

/** Runs one shell command as the agent's Bash tool and returns what the tool printed. */
async function inSandbox(service: RunningService, command: string): Promise<string> {
  const answer = await prompt(service, `isolation-${randomUUID()}`, { message: `bash: ${command}` });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  const text = String(answer.body.text);
  expect(text.startsWith('tool output:')).toBe(true);
  return text;
}

/** Sandbox uids: 1000 in a user namespace, or (as root) one of the service's own range. */
const isSandboxUid = (uid: number) => uid === 1000 || uid >= 200_000;

describe('the sandbox', () => {
  const running = useServiceWithFake({ CLAUDERUN_TURN_TIMEOUT_SECONDS: String(TIMEOUT_SECONDS) });

  it('runs the agent and its tools as a non-root uid', async () => {
    const output = await inSandbox(running.service, 'echo "uid=$(id -u) gid=$(id -g) name=$(id -un)"');
    const [, uid, gid] = /uid=(\d+) gid=(\d+) name=agent/.exec(output) ?? [];
    expect(Number(uid)).toBe(Number(gid));
    expect(isSandboxUid(Number(uid))).toBe(true);
  });

  it("cannot read the host: not the service data, not the project, not root's home", async () => {
    const secret = `host-secret-${randomUUID()}`;
    const secretFile = path.join(running.service.dataDir, 'host-secret.txt');
    writeFileSync(secretFile, secret, { mode: 0o644 });
    const output = await inSandbox(
      running.service,
      `cat ${secretFile}; cat ${path.join(running.service.dataDir, 'clauderun.db')} | head -c 100; ls ${projectRoot()}; ls -a /root; echo END`,
    );
    expect(output).not.toContain(secret);
    expect(output).not.toContain('SQLite format');
    expect(output).not.toContain('package.json');
    expect(output).toMatch(/No such file or directory/);
    expect(output).toContain('END');
  });

  it('cannot connect to ports on the host', async () => {
    const probe = (port: number) =>
      `node -e "require('net').connect(${port},'127.0.0.1').on('connect',()=>{console.log('CONNECTED ${port}');process.exit()}).on('error',e=>console.log('REFUSED ${port}',e.code))"`;
    const output = await inSandbox(running.service, `${probe(running.fake.port)}; ${probe(running.service.port)}`);
    expect(output).toContain(`REFUSED ${running.fake.port}`);
    expect(output).toContain(`REFUSED ${running.service.port}`);
    expect(output).not.toContain('CONNECTED');
  });

  it('has no model key anywhere in its environment: only the turn token', async () => {
    const output = await inSandbox(running.service, "env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'");
    expect(output).not.toContain(running.fake.apiKey);
    expect(output).toMatch(/ANTHROPIC_API_KEY=crt1\./);
  });

  it('stops a 1.6 GB allocation at the memory limit, and the agent lives to report it', async () => {
    const output = await inSandbox(
      running.service,
      'node -e "const b = Buffer.alloc(1.6e9, 1); console.log(\'ALLOCATED\', b.length)"; echo "EXIT=$?"',
    );
    expect(output).not.toContain('ALLOCATED 1600000000');
    expect(output).toContain('EXIT=137');
    const health = await fetch(`${running.service.url}/healthz`);
    expect(health.status).toBe(200);
  });

  it('ends a turn that outlives its timeout as timed_out, with a 504', async () => {
    const started = Date.now();
    const answer = await prompt(running.service, 'sleeper', { message: `bash: ${WAIT_A_MINUTE}` });
    expect(answer.status).toBe(504);
    expect(answer.body).toMatchObject({ error: { code: 'timed_out', details: { status: 'timed_out' } } });
    expect(Date.now() - started).toBeLessThan((TIMEOUT_SECONDS + 10) * 1000);
  });

  it('contains a fork bomb: the turn ends, nothing of it survives, the service stays up', async () => {
    const answer = await prompt(running.service, 'bomber', { message: `bash: bomb() { bomb | bomb & }; bomb; ${WAIT_A_MINUTE}` });
    // However the agent fares inside (its tool fails, or it cannot fork a thread and dies, or the
    // clock runs out), the turn ends in a final state.
    const turn = (answer.status === 200 ? answer.body : (answer.body.error as { details: Record<string, unknown> }).details) as {
      status: string;
      conversationId: string;
      turnId: string;
    };
    expect(['succeeded', 'failed', 'timed_out']).toContain(turn.status);
    // The sandbox is torn down just after the turn ends: give it a moment, then nothing may be left
    // of it. Its cgroups are gone, which the kernel allows only once no process is left in them
    // (and a process of the sandbox cannot leave them). A warm sandbox may wait beside it.
    const sandboxes = path.join(running.service.dataDir, 'sandboxes');
    const used = await sandboxNameOf(running.service, 'bomber', turn.conversationId, turn.turnId);
    await expect.poll(() => (existsSync(sandboxes) ? readdirSync(sandboxes) : []).includes(used), { timeout: 5000 }).toBe(false);
    for (const controller of ['pids', 'memory'] as const) expect(sandboxCgroupDir(used, controller)).toBeUndefined();
    const health = await fetch(`${running.service.url}/healthz`);
    expect(health.status).toBe(200);
  });
});
