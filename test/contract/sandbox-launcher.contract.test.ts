import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxEnd, SandboxHandle, SandboxLauncher } from '../../functions/src/sandbox/launcher.js';
import { openCgroups } from '../../functions/src/sandbox/local/cgroups.js';
import { checkIsolationTools } from '../../functions/src/sandbox/local/preflight.js';
import { startFakeCloudRun } from '../fixtures/fake-cloud-run.js';
import { killLauncherProcesses, launchInProcess } from '../support/launcher-process.js';
import { localSandboxFiles, openLauncher, standInProcesses, SYSTEM_PATH, type LauncherRecipe } from '../support/sandbox-launchers.js';
import { BEAT_MS, startStandInApi, writeStandInRunner, type Plan, type StandInApi } from '../support/stand-in-runner.js';
import { RUNNER_ENV } from '../../functions/src/contract/runner-env.js';

/**
 * One suite, every SandboxLauncher adapter: what the port promises its callers (the turn
 * lifecycle), as behaviour of real sandboxes. Each sandbox runs a stand-in for the runner
 * (stand-in-runner.ts) that asks the API what to do: post a result, exit, exhaust its memory,
 * hang. Where adapters legitimately differ, the difference is a declared capability below.
 */
interface Capabilities {
  /** The launcher's claim (`sandboxesOutliveProcess`), checked against a launcher process really killed. */
  sandboxesOutliveProcess: boolean;
  /**
   * What the end of a program that failed says of how it exited: its exit status, as the
   * sandbox's first process reports it (bubblewrap passes a signal on as 128 + its number, as a
   * shell does), or nothing but the platform's message (a Cloud Run execution says only that its
   * task failed, and why).
   */
  failedExit: 'exit status' | 'message';
  /** Whether status() tells how a finished sandbox ended, or leaves that to the process following it. */
  statusTellsEnd: boolean;
  /** Whether an end carries the platform's time of it (`at`). */
  endTimes: boolean;
}

interface Subject {
  launcher: SandboxLauncher;
  /** The recipe of a launcher on the same platform, as another process would open it (a place of its own, where that matters). */
  anotherProcess(): LauncherRecipe;
  /** What of the turn's sandbox is still there on its platform, and running on this machine: [] once it is gone. Synchronous (see endOf). */
  traces(turnId: string): string[];
  /** A well-formed ref that names nothing the platform knows. */
  unknownRef: string;
  close(): Promise<void>;
}

interface Adapter {
  name: string;
  /** Why the adapter cannot run on this machine: its tests are then skipped, saying so. */
  unavailable?: string;
  can: Capabilities;
  open(api: StandInApi, runner: string, root: string): Promise<Subject>;
}

const JOB = 'projects/clauderun-test/locations/europe-west1/jobs/sandbox';

/** Both adapters run real local sandboxes (Cloud Run's fake runs each execution in one). */
async function isolationUnavailable(): Promise<string | undefined> {
  try {
    checkIsolationTools(process.getuid?.() === 0, SYSTEM_PATH);
    await openCgroups();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}
const unavailable = await isolationUnavailable();

const local: Adapter = {
  name: 'local',
  ...(unavailable !== undefined ? { unavailable } : {}),
  can: { sandboxesOutliveProcess: false, failedExit: 'exit status', statusTellsEnd: false, endTimes: false },
  async open(api, runner, root) {
    const dataDirs: string[] = [];
    const recipe = (): LauncherRecipe => {
      const dataDir = path.join(root, `local-${dataDirs.length + 1}`);
      dataDirs.push(dataDir);
      return { adapter: 'local', dataDir, apiPort: api.port, runner };
    };
    const launcher = await openLauncher(recipe());
    return {
      launcher,
      anotherProcess: () => recipe(),
      traces: (turnId) => [...standInProcesses(turnId), ...dataDirs.flatMap((dir) => localSandboxFiles(dir, turnId))],
      unknownRef: `local:${randomUUID()}`,
      close: () => launcher.close(),
    };
  },
};

const cloudRun: Adapter = {
  name: 'Cloud Run (fake Admin API)',
  ...(unavailable !== undefined ? { unavailable } : {}),
  can: { sandboxesOutliveProcess: true, failedExit: 'message', statusTellsEnd: true, endTimes: true },
  async open(api, runner, root) {
    const executionDirs: string[] = [];
    const fake = await startFakeCloudRun({
      startDelayMs: 100,
      sandboxFor: (apiUrl) => {
        const dataDir = path.join(root, `executions-${executionDirs.length + 1}`);
        executionDirs.push(dataDir);
        return openLauncher({ adapter: 'local', dataDir, apiPort: Number(apiUrl.port), runner });
      },
    });
    const recipe: LauncherRecipe = { adapter: 'cloudrun', endpoint: { host: fake.host, port: fake.port }, jobName: JOB, apiUrl: api.url };
    const launcher = await openLauncher(recipe);
    return {
      launcher,
      anotherProcess: () => recipe,
      traces: (turnId) => [
        ...[...fake.executions.values()]
          .filter((execution) => execution.env[RUNNER_ENV.turnId] === turnId && execution.completionTime === undefined)
          .map((execution) => `execution ${execution.name}, not complete`),
        ...standInProcesses(turnId),
        ...executionDirs.flatMap((dir) => localSandboxFiles(dir, turnId)),
      ],
      unknownRef: `${JOB}/executions/sandbox-${randomUUID().slice(0, 6)}`,
      close: async () => {
        await launcher.close();
        await fake.close();
      },
    };
  },
};

/** Long enough that no case but the timeout's reaches it. */
const NO_TIMEOUT_SECONDS = 60;
/** A stopped sandbox is gone within this (a Cloud Run execution once a poll sees it cancelled). */
const GONE_WITHIN_MS = 5_000;
/** A program that ends by itself (exits, exhausts its memory) has ended within this. */
const ENDS_WITHIN_MS = 15_000;

function launcherContract(adapter: Adapter): void {
  const { can } = adapter;
  const title =
    adapter.unavailable === undefined
      ? `the ${adapter.name} sandbox launcher`
      : `the ${adapter.name} sandbox launcher (SKIPPED: ${adapter.unavailable})`;
  (adapter.unavailable === undefined ? describe : describe.skip)(title, () => {
    let api: StandInApi;
    let runner: Awaited<ReturnType<typeof writeStandInRunner>>;
    let root: string;
    let subject: Subject;
    /** Everything a case launched, stopped after it whatever it left. */
    const launched: SandboxHandle[] = [];

    beforeAll(async () => {
      api = await startStandInApi();
      runner = await writeStandInRunner();
      root = await mkdtemp(path.join(tmpdir(), 'clauderun-launcher-contract-'));
      subject = await adapter.open(api, runner.file, root);
    });
    afterAll(async () => {
      await subject?.close();
      await api?.close();
      await runner?.remove();
      if (root !== undefined) await rm(root, { recursive: true, force: true });
    });
    afterEach(async () => {
      await killLauncherProcesses();
      for (const handle of launched.splice(0)) {
        await handle.cancel().catch(() => undefined);
        await Promise.race([handle.ended, sleep(GONE_WITHIN_MS)]);
      }
    });

    async function launch(plan: Plan, timeoutSeconds = NO_TIMEOUT_SECONDS, launcher = subject.launcher) {
      const turnId = randomUUID();
      const token = `token-${randomUUID()}`;
      api.plan(turnId, token, plan);
      const launchedAt = Date.now();
      const handle = await launcher.launch({ turnId, token, timeoutSeconds });
      launched.push(handle);
      return { turnId, token, handle, launchedAt };
    }

    /** The end of a program that exited with `code` or was killed by SIGKILL, as this adapter reports it. */
    const exited = (program: { code: number } | { killed: true }, outOfMemory: boolean, message?: RegExp) => {
      const status = 'code' in program ? program.code : 128 + 9;
      const how =
        status === 0 || can.failedExit === 'exit status'
          ? { exitCode: status, signal: null, outOfMemory }
          : { exitCode: null, signal: null, outOfMemory, detail: message === undefined ? expect.any(String) : expect.stringMatching(message) };
      return { kind: 'exited', ...how, ...endTime() };
    };
    const endTime = () => (can.endTimes ? { at: expect.any(Number) } : {});
    /** Where the platform dates an end, the date falls within the sandbox's life. */
    const expectDatedWithin = (end: SandboxEnd, launchedAt: number) => {
      if (!can.endTimes) return expect(end.at).toBeUndefined();
      expect(end.at).toBeGreaterThanOrEqual(launchedAt - 1000);
      expect(end.at).toBeLessThanOrEqual(Date.now());
    };
    /** What `work` resolves to, failing if it has not within GONE_WITHIN_MS. */
    const within = async <T>(work: Promise<T>, what: string): Promise<T> => {
      const late = Symbol('late');
      const outcome = await Promise.race([work, sleep(GONE_WITHIN_MS, late)]);
      if (outcome === late) throw new Error(`${what} did not return within ${GONE_WITHIN_MS} ms`);
      return outcome as T;
    };
    const gone = (turnId: string) => expect(subject.traces(turnId)).toEqual([]);
    /**
     * The sandbox's end, once `ended` settles (failing, with what is still there, if it has not
     * within `withinMs`). What is left of the sandbox is read the moment it settles: by then the
     * sandbox and every process in it must be gone.
     */
    const endOf = async (handle: SandboxHandle | undefined, turnId: string, withinMs = GONE_WITHIN_MS): Promise<SandboxEnd> => {
      let leftAtEnd: string[] = [];
      const settled = handle?.ended.then((end) => {
        leftAtEnd = subject.traces(turnId);
        return end;
      });
      const end = await Promise.race([settled, sleep(withinMs, undefined)]);
      if (end === undefined) throw new Error(`not ended within ${withinMs} ms; still there: ${JSON.stringify(subject.traces(turnId))}`);
      expect(leftAtEnd, 'left when ended settled').toEqual([]);
      return end;
    };

    it('runs the program with its spec: it reaches the API as its turn, with its token; a result and exit 0 end it "exited 0"', async () => {
      const { turnId, token, handle, launchedAt } = await launch({ does: 'result' });
      expect(handle.ref).toEqual(expect.any(String));
      expect(handle.ref).not.toBe('');
      const end = await endOf(handle, turnId, ENDS_WITHIN_MS);
      expect(end).toEqual(exited({ code: 0 }, false));
      expectDatedWithin(end, launchedAt);
      expect(api.seen(turnId)).toMatchObject({ token, result: { text: 'done' } });
      // A cancel after the end is harmless (callers stop a sandbox whatever its state): it resolves, starting nothing.
      await expect(handle.cancel()).resolves.toBeUndefined();
      gone(turnId);
    });

    it('ends a program that exits without a result "exited", with its code; ended settles once every process of it is gone', async () => {
      const { turnId, handle } = await launch({ does: 'exit', exitCode: 3, leave: true });
      const end = await endOf(handle, turnId, ENDS_WITHIN_MS);
      expect(end).toEqual(exited({ code: 3 }, false));
      expect(api.seen(turnId)?.result).toBeUndefined();
      expect(api.seen(turnId)?.beats.leftover).toBeGreaterThan(0);
    });

    it('reports a program killed for exhausting its memory as out of memory', async () => {
      const { turnId, handle } = await launch({ does: 'oom' });
      const end = await endOf(handle, turnId, ENDS_WITHIN_MS);
      expect(end).toEqual(exited({ killed: true }, true, /memory/i));
    });

    it('stops a sandbox at its timeout and ends it "timed_out"', async () => {
      const timeoutSeconds = 2;
      const { turnId, handle, launchedAt } = await launch({ does: 'hang', leave: true }, timeoutSeconds);
      await api.running(turnId);
      const end = await endOf(handle, turnId, timeoutSeconds * 1000 + GONE_WITHIN_MS);
      const lasted = Date.now() - launchedAt;
      expect(end).toEqual({ kind: 'timed_out', ...endTime() });
      expect(lasted).toBeGreaterThanOrEqual(timeoutSeconds * 1000);
      expect(lasted).toBeLessThan(timeoutSeconds * 1000 + GONE_WITHIN_MS);
    });

    it('cancels a running sandbox: it ends "cancelled" and is gone; another sandbox runs on', async () => {
      const victim = await launch({ does: 'hang', leave: true });
      const bystander = await launch({ does: 'hang' });
      expect(victim.handle.ref).not.toBe(bystander.handle.ref);
      await Promise.all([api.running(victim.turnId), api.running(bystander.turnId)]);
      const before = Date.now();
      await victim.handle.cancel();
      const end = await endOf(victim.handle, victim.turnId);
      expect(Date.now() - before).toBeLessThan(GONE_WITHIN_MS);
      expect(end).toEqual({ kind: 'cancelled', ...endTime() });
      const beats = api.seen(bystander.turnId)?.beats.program ?? 0;
      await sleep(3 * BEAT_MS);
      expect(api.seen(bystander.turnId)?.beats.program).toBeGreaterThan(beats);
      expect(subject.traces(bystander.turnId)).not.toEqual([]);
    });

    it('cancels a sandbox at once after its launch, before its program got going: it still ends "cancelled" and is gone', async () => {
      const { turnId, handle } = await launch({ does: 'hang', leave: true });
      const before = Date.now();
      await handle.cancel();
      const end = await endOf(handle, turnId);
      expect(end).toEqual({ kind: 'cancelled', ...endTime() });
      expect(Date.now() - before).toBeLessThan(GONE_WITHIN_MS);
    });

    it(`status: undefined while a sandbox runs; once it has ended, ${can.statusTellsEnd ? 'its end' : 'still undefined (its process follows it)'}`, async () => {
      const { turnId, handle, launchedAt } = await launch({ does: 'hang' });
      await api.running(turnId);
      expect(await subject.launcher.status(handle.ref, launchedAt)).toBeUndefined();
      await handle.cancel();
      const end = await endOf(handle, turnId);
      expect(await subject.launcher.status(handle.ref, launchedAt)).toEqual(can.statusTellsEnd ? end : undefined);
    });

    it(`status of a ref the platform does not know: undefined soon after its launch; long after, ${can.statusTellsEnd ? 'an end' : 'still undefined'}`, async () => {
      expect(await subject.launcher.status(subject.unknownRef, Date.now())).toBeUndefined();
      const longAgo = Date.now() - 60 * 60_000;
      const end = await subject.launcher.status(subject.unknownRef, longAgo);
      if (can.statusTellsEnd) expect(end).toMatchObject({ kind: 'exited', outOfMemory: false, detail: expect.any(String) });
      else expect(end).toBeUndefined();
    });

    it(`declares sandboxesOutliveProcess ${can.sandboxesOutliveProcess}`, () => {
      expect(subject.launcher.sandboxesOutliveProcess).toBe(can.sandboxesOutliveProcess);
    });

    if (can.sandboxesOutliveProcess) {
      it('reattaches from another launcher: the same ref, the same end; a cancel through it stops the sandbox', async () => {
        const { turnId, handle, launchedAt } = await launch({ does: 'hang' });
        await api.running(turnId);
        const other = await openLauncher(subject.anotherProcess());
        try {
          const again = other.reattach(handle.ref);
          expect(again?.ref).toBe(handle.ref);
          await again?.cancel();
          const end = await endOf(again, turnId);
          expect(end).toEqual({ kind: 'cancelled', ...endTime() });
          expect(await endOf(handle, turnId)).toEqual(end);
          // A sandbox reattached after its end reports that end.
          expect(await endOf(other.reattach(handle.ref), turnId)).toEqual(end);
          expect(await other.status(handle.ref, launchedAt)).toEqual(end);
        } finally {
          await other.close();
        }
      });

      it('runs on when the process that launched it is killed; this process reattaches it and stops it', async () => {
        const turnId = randomUUID();
        const token = `token-${randomUUID()}`;
        api.plan(turnId, token, { does: 'hang' });
        const owner = await launchInProcess(subject.anotherProcess(), { turnId, token, timeoutSeconds: NO_TIMEOUT_SECONDS });
        await api.running(turnId);
        await owner.kill();
        const beats = api.seen(turnId)?.beats.program ?? 0;
        await sleep(5 * BEAT_MS);
        expect(api.seen(turnId)?.beats.program).toBeGreaterThan(beats);
        const handle = subject.launcher.reattach(owner.ref);
        expect(handle?.ref).toBe(owner.ref);
        if (handle === undefined) return;
        launched.push(handle);
        await handle.cancel();
        expect(await endOf(handle, turnId)).toEqual({ kind: 'cancelled', ...endTime() });
      });

      it('runs on after its launcher is closed (the launcher only stops watching); another launcher reattaches it', async () => {
        const recipe = subject.anotherProcess();
        const closing = await openLauncher(recipe);
        const { turnId, handle } = await launch({ does: 'hang' }, NO_TIMEOUT_SECONDS, closing);
        await api.running(turnId);
        await within(closing.close(), 'close');
        const beats = api.seen(turnId)?.beats.program ?? 0;
        const endedAfterClose = handle.ended.then((end) => end);
        await sleep(5 * BEAT_MS);
        expect(api.seen(turnId)?.beats.program).toBeGreaterThan(beats);
        // Its handle reports no end while it runs on: the port's promise holds after a close too.
        expect(await Promise.race([endedAfterClose, sleep(0).then(() => 'pending')])).toBe('pending');
        // A handle asked of the closed launcher watches nothing, so it never reports the end below.
        const late = closing.reattach(handle.ref);
        const again = subject.launcher.reattach(handle.ref);
        if (again === undefined) throw new Error('no handle on a sandbox that runs on');
        launched.push(again);
        await again.cancel();
        expect(await endOf(again, turnId)).toEqual({ kind: 'cancelled', ...endTime() });
        await sleep(3 * BEAT_MS);
        expect(await Promise.race([handle.ended, late?.ended, sleep(0).then(() => 'pending')])).toBe('pending');
      });
    } else {
      it('reattaches nothing: a sandbox cannot have survived the process that started it', async () => {
        const { turnId, handle } = await launch({ does: 'hang' });
        await api.running(turnId);
        expect(subject.launcher.reattach(handle.ref)).toBeUndefined();
        expect(subject.launcher.reattach(subject.unknownRef)).toBeUndefined();
      });

      it('dies with the process that launched it; the next launcher on its place clears what it left', async () => {
        const turnId = randomUUID();
        const token = `token-${randomUUID()}`;
        api.plan(turnId, token, { does: 'hang', leave: true });
        const recipe = subject.anotherProcess();
        const owner = await launchInProcess(recipe, { turnId, token, timeoutSeconds: NO_TIMEOUT_SECONDS });
        try {
          await api.running(turnId);
          await owner.kill();
          await expect.poll(() => standInProcesses(turnId), { timeout: GONE_WITHIN_MS }).toEqual([]);
          expect(subject.launcher.reattach(owner.ref)).toBeUndefined();
        } finally {
          // Whatever happened, the next launcher on the place stops what is left there: nothing else would.
          const next = await openLauncher(recipe);
          await next.close();
        }
        gone(turnId);
      });

      it('stops its sandboxes when it is closed: each ends "cancelled" and is gone', async () => {
        const closing = await openLauncher(subject.anotherProcess());
        const { turnId, handle } = await launch({ does: 'hang', leave: true }, NO_TIMEOUT_SECONDS, closing);
        await api.running(turnId);
        await within(closing.close(), 'close');
        expect(await endOf(handle, turnId)).toEqual({ kind: 'cancelled', ...endTime() });
      });
    }
  });
}

launcherContract(local);
launcherContract(cloudRun);
