import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../functions/src/project-root.js';
import { call, useServiceWithFake } from '../support/service.js';
import { FINAL_STATES, commandOutput, startInSandbox, turnStatus } from '../support/in-sandbox.js';

/** The turn token as the agent holds it (its model key). */
const TOKEN = /TOKEN=(crt1\.[^\s]+)/;

describe('what the sandbox can see of the host', () => {
  const running = useServiceWithFake({});

  it("has an /etc of its own: no host user, not the host's hostname or machine-id", async () => {
    const hostUsers = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .map((line) => line.split(':')[0] ?? '')
      .filter((name) => name !== '' && !['root', 'nobody'].includes(name));
    const output = await commandOutput(
      running.service,
      'echo "user=$(id -un)"; echo "PASSWD["; cat /etc/passwd; echo "]"; cat /etc/hostname; cat /etc/machine-id; ls /etc',
    );
    expect(output).toContain('user=agent');
    const passwd = /PASSWD\[\n([\s\S]*?)\n\]/.exec(output)?.[1] ?? '';
    expect(passwd).toMatch(/^agent:x:(\d+):\1:agent:\/home\/agent:/m);
    for (const user of hostUsers) expect(passwd.split('\n').map((line) => line.split(':')[0])).not.toContain(user);
    expect(output).toMatch(/machine-id: No such file or directory/);
    const hostMachineId = readFileSync('/etc/machine-id', 'utf8').trim();
    if (hostMachineId !== '') expect(output).not.toContain(hostMachineId);
    if (hostname() !== 'sandbox') expect(output).not.toContain(hostname());
    expect(output).not.toContain('shadow');
  });

  it('sees neither the data dir, nor the project, nor its token in its command lines and mount table', async () => {
    const output = await commandOutput(
      running.service,
      'echo "TOKEN=$ANTHROPIC_API_KEY"; echo "CMDLINES["; for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < $f; echo; done; echo "]"; echo "MOUNTS["; cat /proc/self/mountinfo; echo "]"',
    );
    const token = TOKEN.exec(output)?.[1];
    expect(token).toBeDefined();
    const seen = output.replace(TOKEN, '');
    expect(/CMDLINES\[\n([\s\S]*?)\]/.exec(seen)?.[1]).toMatch(/^bwrap --args 3 \/opt\/clauderun\/start *$/m);
    for (const secret of [token ?? 'no token', running.service.dataDir, projectRoot()]) expect(seen).not.toContain(secret);
  });

  it("shows no turn token in the host's process list while a turn runs", async () => {
    const started = await startInSandbox(running.service, 'echo "TOKEN=$ANTHROPIC_API_KEY"; perl -e "sleep 3"');
    const samples: string[] = [];
    while (!FINAL_STATES.includes(await turnStatus(running.service, started))) {
      samples.push(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }));
      await sleep(100);
    }
    const turn = await call(running.service, 'GET', `/api/conversations/${started.conversationId}/turns/${started.turnId}`, {
      userId: started.userId,
    });
    const token = TOKEN.exec(String(turn.body.text))?.[1];
    expect(token).toBeDefined();
    expect(samples.length).toBeGreaterThan(5);
    expect(samples.some((sample) => sample.includes('bwrap'))).toBe(true);
    for (const sample of samples) expect(sample).not.toContain(token);
  });
});
