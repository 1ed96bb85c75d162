import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Turn } from '../../functions/src/domain/turn.js';
import { openFirestore } from '../../functions/src/store/firestore-client.js';
import { FirestoreConversationStore } from '../../functions/src/store/firestore.js';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { HOST_NPM, INSTALL_AND_USE, PACKAGE, REGISTRY_HOST, startNpmRegistry, type NpmRegistry } from '../fixtures/npm-registry.js';
import { PUBLIC_FUNCTION, RUNNER_FUNCTION, startSimulation, type Simulation, type SimulationOptions } from '../sim/simulation.js';
import { firestoreEmulatorUnavailable } from '../support/firestore-emulator.js';
import { call, linkPath, prompt, TEST_QUOTA_ENV } from '../support/service.js';
import { startServiceProcess } from '../support/service-process.js';
import { readEvents } from '../support/sse.js';
import { RUNNER_ENV } from '../../functions/src/contract/runner-env.js';

const unavailable = firestoreEmulatorUnavailable();
if (unavailable !== undefined) console.warn(`Firestore emulator not found: the production-path tests are SKIPPED (${unavailable})`);
const describeWithEmulator = unavailable === undefined ? describe : describe.skip;

/** How often Cloud Scheduler calls the sweeper where a test needs it (its cron runs at most once a minute). */
const SWEEP_SECONDS = 2;

/** Executions start quickly here: the realistic few seconds are `npm run sim`'s default. */
const QUICK_CLOUD_RUN = { startDelayMs: 200 };

/** The simulation's Firestore, as its functions see it. */
async function storeOf(s: Simulation): Promise<FirestoreConversationStore> {
  const env = s.fakes.apiEnv(0);
  return new FirestoreConversationStore(
    await openFirestore({ projectId: env.GOOGLE_CLOUD_PROJECT ?? '', emulatorHost: env.FIRESTORE_EMULATOR_HOST }),
  );
}

async function processState(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

describeWithEmulator(
  'the production path on the simulated platform (Functions Framework instances, Firestore emulator, fake Cloud Run and Cloud Storage)',
  () => {
    let fake: FakeAnthropic;
    let dataDir: string;
    beforeAll(async () => {
      fake = await startFakeAnthropic();
      dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-sim-test-'));
    });
    afterAll(async () => {
      await fake?.close();
      await rm(dataDir, { recursive: true, force: true });
    });

    type Options = Omit<SimulationOptions, 'dataDir' | 'log'>;

    /**
     * A simulation in this process, stopped after the describe's tests; its log is kept for
     * failure messages. Options given as a function are read when it starts (after the
     * describe's earlier beforeAll hooks).
     */
    function useSimulation(given: Options | (() => Options), dir: string): { sim: () => Simulation; logs: () => string } {
      let sim: Simulation | undefined;
      const logs: string[] = [];
      beforeAll(async () => {
        const options = typeof given === 'function' ? given() : given;
        sim = await startSimulation({
          ...options,
          dataDir: path.join(dataDir, dir),
          log: (m) => logs.push(m),
          env: { ...TEST_QUOTA_ENV, ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url, ...options.env },
          cloudRun: { ...QUICK_CLOUD_RUN, ...options.cloudRun },
          sweepEverySeconds: options.sweepEverySeconds ?? 0,
        });
      });
      afterAll(async () => sim?.close());
      return {
        sim: () => {
          if (sim === undefined) throw new Error('the simulation did not start');
          return sim;
        },
        logs: () => logs.slice(-60).join('\n'),
      };
    }

    it("`npm run sim` serves the seed's calls as `npm start` does, and stops cleanly", async () => {
      const sim = await startServiceProcess(
        {
          CLAUDERUN_DATA_DIR: path.join(dataDir, 'sim'),
          ANTHROPIC_API_KEY: fake.apiKey,
          ANTHROPIC_BASE_URL: fake.url,
          CLAUDERUN_MAX_TURNS_PER_MINUTE: '2',
          CLAUDERUN_SIM_START_DELAY_MS: '200',
          // The defaults otherwise: two functions as deployed, and sandboxes given the runner
          // function's own root URL, as the deployment's load balancer gives it.
        },
        'sim',
      );
      let exitCode: number | null;
      try {
        const first = await prompt(sim, 'sim-user', { message: 'write: /workspace/sim.txt from the cloud path' });
        expect(first.status, `${JSON.stringify(first.body)}\n${sim.output()}`).toBe(200);
        const second = await prompt(sim, 'sim-user', { message: 'bash: cat /workspace/sim.txt', conversationId: first.body.conversationId });
        expect(second.status, `${JSON.stringify(second.body)}\n${sim.output()}`).toBe(200);
        expect(second.body.text).toContain('from the cloud path');
        const list = await call(sim, 'GET', '/api/conversations', { userId: 'sim-user' });
        expect(list.body.conversations).toHaveLength(1);
        // Limits and usage live in Firestore on this path.
        const usage = await call(sim, 'GET', '/api/usage', { userId: 'sim-user' });
        expect(usage.body).toMatchObject({ turns: 2, runningTurns: 0, limits: { turnsPerMinute: 2 } });
        expect(usage.body.tokens as number).toBeGreaterThan(0);
        const third = await prompt(sim, 'sim-user', { message: 'one too many' });
        expect(third.status).toBe(429);
        expect((third.body.error as { details: unknown }).details).toMatchObject({ limit: 'turns_per_minute', max: 2 });
        // Served by Functions Framework instances of their own, not by the sim's process.
        expect(sim.output()).toMatch(/clauderun-api: instance #1 started \(pid \d+\)/);
        expect(sim.output()).toMatch(/clauderun-runner: instance #1 started \(pid \d+\)/);
      } finally {
        exitCode = await sim.stop();
      }
      expect(exitCode, sim.output()).toBe(0);
    });

    describe('one function, sandboxes given its cloudfunctions.net-style URL', () => {
      const { sim, logs } = useSimulation({ layout: 'one', sandboxUrl: 'prefixed', env: { CLAUDERUN_TURN_TIMEOUT_SECONDS: '60' } }, 'prefixed');

      it('serves the API under /clauderun-api on the shared origin and at the root of its own, and freezes the instance between requests', async () => {
        const s = sim();
        expect(s.sandboxApiUrl).toBe(s.url);
        expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
        expect((await fetch(`${s.rootUrl}/healthz`)).status).toBe(200);
        expect((await fetch(`${new URL(s.url).origin}/healthz`)).status).toBe(404);
        const [instance] = s.publicPool.instances;
        expect(instance, logs()).toBeDefined();
        await sleep(100);
        expect(await processState(instance?.pid ?? 0)).toBe('T');
      });

      // The tunnel's WebSocket goes through the front (an upgrade, under the function's path) to a
      // framework instance, whose policy (an empty allowlist) refuses: the tool's 403 says so.
      it("carries a tool's connection out through the front to the runner's function, which refuses it by policy", async () => {
        const answer = await prompt(sim(), 'sim-egress', { message: "bash: curl -sS -w ' status=%{http_code}' http://example.com/" });
        expect(answer.status, `${JSON.stringify(answer.body)}\n${logs()}`).toBe(200);
        expect(answer.body.text).toContain('status=403');
        expect(answer.body.text).toContain('this deployment does not allow example.com:80');
      });

      // The Functions Framework's own server parses the body before the function runs; its own
      // answer to unparseable JSON was an HTML page.
      it('answers broken JSON with a JSON 400 on the deployed entry point', async () => {
        const response = await fetch(`${sim().url}/api/conversation`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-user-id': 'broken-user' },
          body: '{broken',
        });
        expect(response.status).toBe(400);
        expect(response.headers.get('content-type')).toContain('application/json');
        expect(await response.json()).toMatchObject({ error: { code: expect.any(String) } });
      });

      it("accepts Cloud Scheduler's call of the sweeper, and refuses another account's token", async () => {
        const s = sim();
        const status = await s.scheduler.runNow();
        expect(status, logs()).toBeGreaterThanOrEqual(200);
        expect(status).toBeLessThan(300);
        // The scheduler's audience is the public URL (infra/sweeper.ts).
        const audience = s.url;
        const stranger = await fetch(`${s.url}/ops/sweep`, {
          method: 'POST',
          headers: { authorization: `Bearer ${await s.tokens.idToken(audience, 'someone-else@elsewhere.iam.gserviceaccount.com')}` },
        });
        expect([401, 403]).toContain(stranger.status);
      });
    });

    describe('egress through the runner function', () => {
      let registry: NpmRegistry | undefined;
      beforeAll(async () => {
        registry = await startNpmRegistry();
      });
      afterAll(async () => registry?.close());
      // The runner's function alone judges and carries connections out (infra/function-roles.ts).
      const { sim, logs } = useSimulation(
        () => ({ layout: 'split', sandboxUrl: 'root', functionEnv: { [RUNNER_FUNCTION]: registry?.egressEnv ?? {} } }),
        'egress',
      );

      it.skipIf(!existsSync(HOST_NPM))(
        "a sandbox's npm installs a package from the allowed registry through the front, and is refused the public one; every attempt is an event (needs /usr/bin/npm)",
        async () => {
          const client = { url: sim().rootUrl };
          const answer = await prompt(client, 'sim-npm', {
            message: `bash: ${INSTALL_AND_USE}; npm view left-pad version --no-update-notifier --fetch-retries=0 --cache /tmp/npm-cache 2>&1 | grep -m1 'Forbidden - GET'`,
          });
          expect(answer.status, `${JSON.stringify(answer.body)}\n${logs()}`).toBe(200);
          expect(String(answer.body.text)).toContain('padded:...x');
          expect(String(answer.body.text)).toContain('403 Forbidden - GET https://registry.npmjs.org/left-pad');
          expect(registry?.requested).toContain(`GET /${PACKAGE}/-/${PACKAGE}-1.0.0.tgz`);
          const path = `/api/conversations/${String(answer.body.conversationId)}/turns/${String(answer.body.turnId)}/events`;
          const { events } = await readEvents(`${client.url}${path}`, { 'x-user-id': 'sim-npm' });
          const egress = events.filter((e) => e.event === 'egress').map((e) => e.data.data as { host: string; allowed: boolean });
          expect(egress.filter((e) => e.host === REGISTRY_HOST && e.allowed).length).toBeGreaterThanOrEqual(1);
          expect(egress).toContainEqual(expect.objectContaining({ host: 'registry.npmjs.org', allowed: false }));
          expect(answer.body.egress).toMatchObject({ connections: egress.length });
        },
      );
    });

    describe("Claude through Vertex AI (CLAUDERUN_MODEL_UPSTREAM=vertex), tokens from the platform's metadata server, no model key", () => {
      const { sim, logs } = useSimulation(
        { env: { CLAUDERUN_MODEL_UPSTREAM: 'vertex', ANTHROPIC_API_KEY: undefined, ANTHROPIC_BASE_URL: undefined } },
        'vertex',
      );

      it('answers a turn through the Vertex AI stand-in and meters it', async () => {
        const s = sim();
        const fakeCalls = fake.calls.length;
        const answer = await prompt(s, 'vertex-user', { message: 'hello from vertex' });
        expect(answer.status, `${JSON.stringify(answer.body)}\n${logs()}`).toBe(200);
        expect(answer.body).toMatchObject({ status: 'succeeded', text: 'echo: hello from vertex' });
        expect((answer.body.usage as { outputTokens: number }).outputTokens).toBeGreaterThan(0);
        const vertex = s.vertex;
        if (vertex === undefined) throw new Error('the simulation started no Vertex AI stand-in');
        expect(vertex.api.requests.length).toBeGreaterThan(0);
        for (const request of vertex.api.requests) {
          expect(request.url).toMatch(
            /^\/v1\/projects\/clauderun-sim-[0-9a-f]+\/locations\/global\/publishers\/anthropic\/models\/[^/]+:(rawPredict|streamRawPredict)$/,
          );
          expect(request.status).toBe(200);
          expect(vertex.metadata.issued).toContain(request.token);
        }
        expect(fake.calls.length).toBe(fakeCalls);
      });
    });

    describe('warm sandboxes: executions started ahead of their turns, filled by the sweeper and by claims', () => {
      const WARM_START_MS = 1500;
      const { sim, logs } = useSimulation(
        {
          env: { CLAUDERUN_WARM_SANDBOXES: '1', CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS: '20' },
          cloudRun: { startDelayMs: WARM_START_MS },
          // Instances stop soon after their last request: an execution outlives the one that started it.
          instances: { idleStopMs: 3000 },
          sweepEverySeconds: SWEEP_SECONDS,
        },
        'warm',
      );
      /** Executions started warm (their overrides carry a pool token, and no turn). */
      const warmExecutions = () =>
        [...sim().fakes.cloudRun.executions.values()].filter(
          (e) => e.env[RUNNER_ENV.poolToken] !== undefined && e.env[RUNNER_ENV.turnId] === undefined,
        );

      it('a turn runs in the execution started before its prompt, whose overrides held no turn and no turn token; the claiming request starts the next', async () => {
        const s = sim();
        const store = await storeOf(s);
        try {
          // The scheduled sweeper fills the pool (no prompt has come yet); the execution is ready
          // once its runner's ask for a turn reached the store.
          const ready = async () => (await store.listWarmSandboxes()).filter((w) => w.turnId === null && w.seenAt !== null).length;
          await expect.poll(ready, { timeout: 30_000, interval: 200 }).toBeGreaterThanOrEqual(1);
          const before = new Set(warmExecutions().map((e) => e.name));
          const posted = Date.now();
          const answer = await prompt({ url: s.rootUrl }, 'warm-user', { message: 'hello warm' });
          expect(answer.status, `${JSON.stringify(answer.body)}\n${logs()}`).toBe(200);
          expect(answer.body).toMatchObject({ status: 'succeeded', text: 'echo: hello warm' });
          const turn = await store.getTurn(String(answer.body.turnId));
          const execution = s.fakes.cloudRun.executions.get(turn?.sandboxRef ?? '');
          expect(before.has(execution?.name ?? ''), `${turn?.sandboxRef}\n${logs()}`).toBe(true);
          expect(Date.parse(execution?.createTime ?? '')).toBeLessThan(posted);
          expect(Object.keys(execution?.env ?? {}).sort()).toEqual([RUNNER_ENV.apiUrl, RUNNER_ENV.poolToken, RUNNER_ENV.sandboxId].sort());
          expect(Object.values(execution?.env ?? {}).join(' ')).not.toContain('crt1.');
          // The request that claimed started another before it answered.
          expect(warmExecutions().some((e) => !before.has(e.name))).toBe(true);
        } finally {
          await store.close();
        }
      });

      it('a warm execution no turn claims ends when its time is up, and the sweeper has started another before', async () => {
        const s = sim();
        const store = await storeOf(s);
        let waiting: ReturnType<typeof warmExecutions>[number] | undefined;
        try {
          // One that waits for a turn, not the one an earlier test's turn claimed (which may still be winding down).
          await expect
            .poll(
              async () => {
                const unclaimed = new Set((await store.listWarmSandboxes()).filter((w) => w.turnId === null && w.seenAt !== null).map((w) => w.id));
                waiting = warmExecutions().find((e) => e.completionTime === undefined && unclaimed.has(e.env[RUNNER_ENV.sandboxId] ?? ''));
                return waiting !== undefined;
              },
              { timeout: 30_000, interval: 200 },
            )
            .toBe(true);
        } finally {
          await store.close();
        }
        const name = waiting!.name;
        await expect.poll(() => s.fakes.cloudRun.executions.get(name)?.completionTime, { timeout: 40_000, interval: 500 }).toBeDefined();
        // It ended by itself, told that no turn would come: not failed, not cancelled.
        const { handle: _handle, env: _env, ...ended } = s.fakes.cloudRun.executions.get(name)!;
        expect(ended.succeededCount, `${JSON.stringify(ended)}\n${logs()}`).toBe(1);
        expect(warmExecutions().some((e) => e.name !== name && Date.parse(e.createTime) < Date.parse(ended.completionTime ?? ''))).toBe(true);
      }, 60_000);
    });

    describe('two functions of the same source: public routes and runner routes (CLAUDERUN_SERVE)', () => {
      // Only the runner's function holds a working model key, so a turn can succeed only if its
      // runner and model calls were served there.
      const { sim, logs } = useSimulation(
        {
          layout: 'split',
          sandboxUrl: 'root',
          functionEnv: { [PUBLIC_FUNCTION]: { ANTHROPIC_API_KEY: 'sk-ant-wrong-key' } },
          sweepEverySeconds: SWEEP_SECONDS,
        },
        'split',
      );

      it('settles a turn whose sandbox was killed, with no client waiting and every instance frozen: the scheduled sweeper does it', async () => {
        const s = sim();
        const client = { url: s.rootUrl };
        const started = await prompt(client, 'lost-user', { message: 'bash: node -e "setTimeout(() => {}, 60000)"' }, { prefer: 'respond-async' });
        expect(started.status, `${JSON.stringify(started.body)}\n${logs()}`).toBe(202);
        const execution = () => [...s.fakes.cloudRun.executions.values()].find((e) => e.env[RUNNER_ENV.turnId] === started.body.turnId);
        const deadline = Date.now() + 30_000;
        while (execution()?.handle === undefined && Date.now() < deadline) await sleep(100);
        // Mid-turn: the agent's tool runs.
        await sleep(3000);
        const name = execution()?.name ?? '';
        await s.fakes.cloudRun.killExecution(name);
        const killedAt = Date.now();
        // Nobody asks for the turn, so only the scheduler's calls give an instance CPU; the turn is
        // watched in Firestore itself, which gives none.
        const store = await storeOf(s);
        let turn: Turn | undefined;
        try {
          // Settled within a few seconds when the machine is quiet; a loaded one (the whole suite
          // on 2 cores) may take several sweeps, each starting a frozen or stopped instance.
          const settleBy = killedAt + 45_000;
          while (Date.now() < settleBy && (turn = await store.getTurn(started.body.turnId as string))?.finishedAt === null) await sleep(250);
        } finally {
          await store.close();
        }
        expect(turn, `${logs()}\nscheduler's calls: ${s.scheduler.attempts.join(' ')}`).toMatchObject({
          status: 'failed',
          reason: expect.stringContaining('Container terminated on signal 9.'),
        });
        if (process.env.CLAUDERUN_TEST_LOGS)
          console.error(`lost turn settled ${Date.parse(turn?.finishedAt ?? '') - killedAt} ms after its sandbox was killed`);
        expect(s.scheduler.attempts.filter((status) => status === 200).length).toBeGreaterThanOrEqual(1);
      });

      it('brings back a state over the 10 MB a streamed response may carry: the state goes with its length', async () => {
        const client = { url: sim().rootUrl };
        // Random bytes do not compress: the state archive is about 12 MB.
        const written = await prompt(client, 'big-state', {
          message: 'bash: head -c 12000000 /dev/urandom > /workspace/big && sha256sum /workspace/big',
        });
        expect(written.status, `${JSON.stringify(written.body)}\n${logs()}`).toBe(200);
        const sum = /[0-9a-f]{64}/.exec(String(written.body.text))?.[0];
        expect(sum, String(written.body.text)).toBeDefined();
        const read = await prompt(client, 'big-state', { message: 'bash: sha256sum /workspace/big', conversationId: written.body.conversationId });
        expect(read.status, `${JSON.stringify(read.body)}\n${logs()}`).toBe(200);
        expect(String(read.body.text)).toContain(sum);
      });

      it('workspace files on Cloud Storage: put through the public function, changed by the agent through the runner function, downloaded past 10 MB with their length', async () => {
        const client = { url: sim().rootUrl };
        const user = 'files-user';
        const created = await call(client, 'POST', '/api/conversations', { userId: user, body: {} });
        expect(created.status, `${JSON.stringify(created.body)}\n${logs()}`).toBe(201);
        const files = `/api/conversations/${String(created.body.conversationId)}/files`;
        const send = (method: string, route: string, body?: string) =>
          fetch(`${client.url}${route}`, { method, headers: { 'x-user-id': user }, body });
        expect((await send('PUT', `${files}/notes.txt`, 'draft\n')).status).toBe(201);
        const turn = await prompt(client, user, {
          conversationId: created.body.conversationId,
          message: 'bash: sed -i s/draft/final/ notes.txt && head -c 12000000 /dev/urandom > big.bin',
        });
        expect(turn.status, `${JSON.stringify(turn.body)}\n${logs()}`).toBe(200);
        const listed = await call(client, 'GET', files, { userId: user });
        expect(listed.body.files).toEqual(
          expect.arrayContaining([
            expect.objectContaining({ path: 'notes.txt', size: 6 }),
            expect.objectContaining({ path: 'big.bin', size: 12_000_000 }),
          ]),
        );
        expect(await (await send('GET', `${files}/notes.txt`)).text()).toBe('final\n');
        const big = await send('GET', `${files}/big.bin`);
        expect(big.status).toBe(200);
        expect((await big.arrayBuffer()).byteLength).toBe(12_000_000);
        const archive = await send('GET', `/api/conversations/${String(created.body.conversationId)}/archive`);
        expect(archive.status).toBe(200);
        expect((await archive.arrayBuffer()).byteLength).toBeGreaterThan(12_000_000);
      });

      // The runner function, handling the result post, must commit the turn before it stops the
      // sandbox: stopping it drops that very request, and the instance is frozen mid-handler. With
      // one function the client's own waiting request keeps the instance running, which hides it.
      it('a turn started through the public function is run through the runner function, and watched live through the first', async () => {
        const s = sim();
        expect(s.sandboxApiUrl).toBe(s.platform.rootUrl(RUNNER_FUNCTION));
        const client = { url: s.rootUrl };
        const started = await prompt(client, 'two-user', { message: 'bash: echo across-functions' }, { prefer: 'respond-async' });
        expect(started.status, `${JSON.stringify(started.body)}\n${logs()}`).toBe(202);
        const links = started.body.links as { events: string; turn: string };
        const streamed = await readEvents(`${s.rootUrl}${linkPath(links.events)}`, { 'x-user-id': 'two-user' });
        expect(streamed.events.map((e) => e.event)).toEqual(expect.arrayContaining(['tool_use', 'tool_result', 'result']));
        expect(streamed.events.at(-1)?.data, logs()).toMatchObject({ data: { status: 'succeeded' } });

        const held = await prompt(client, 'two-user', { message: 'held across functions', conversationId: started.body.conversationId });
        expect(held.status, `${JSON.stringify(held.body)}\n${logs()}`).toBe(200);
        expect(held.body).toMatchObject({ status: 'succeeded', text: 'echo: held across functions' });
        expect(fake.calls.some((c) => c.apiKey === 'sk-ant-wrong-key')).toBe(false);
        expect(s.runnerPool.history.length).toBeGreaterThanOrEqual(1);
        // Each turn held its running slot until its execution was seen gone; the runner function
        // lost its CPU with the result's request, so reading the usage is what lets them go.
        await expect
          .poll(async () => (await call(client, 'GET', '/api/usage', { userId: 'two-user' })).body.runningTurns, { timeout: 30_000, interval: 2000 })
          .toBe(0);
      });
    });
  },
);
