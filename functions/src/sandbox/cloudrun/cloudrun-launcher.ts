import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecutionsClient, JobsClient } from '@google-cloud/run';
import { runnerEnv, SANDBOX_CONTAINER_NAME, type SandboxCredentials } from '../../contract/runner-env.js';
import {
  SandboxUnavailableError,
  type SandboxEnd,
  type SandboxHandle,
  type SandboxLauncher,
  type SandboxSpec,
  type WarmSandboxHandle,
  type WarmSandboxSpec,
} from '../launcher.js';

/** The parts of the Cloud Run v2 clients this launcher calls; tests and the sim pass the real clients. */
export type RunJobs = Pick<JobsClient, 'runJob'>;
export type RunExecutions = Pick<ExecutionsClient, 'getExecution' | 'cancelExecution'>;

export interface CloudRunLauncherOptions {
  jobs: RunJobs;
  executions: RunExecutions;
  /** projects/P/locations/L/jobs/J: the job built from sandbox-image/. */
  jobName: string;
  /** The API's URL as a sandbox reaches it. */
  apiUrl: string;
  /** runJob refusals (429/503) retried this many times, with exponential backoff from `retryBaseMs`. */
  retries?: number;
  retryBaseMs?: number;
  /** First interval between execution polls; it doubles up to `maxPollMs`. */
  firstPollMs?: number;
  maxPollMs?: number;
  log: (message: string) => void;
}

/** How often a cancelled execution is looked at until it has stopped. */
const CANCEL_POLL_MS = 500;

/** gRPC codes gax reports for HTTP 429, 400 (failed precondition) and 503 on the REST transport. */
const RESOURCE_EXHAUSTED = 8;
const FAILED_PRECONDITION = 9;
const NOT_FOUND = 5;
/** How long after its launch an execution that is not found is taken to be still on its way. */
const NEW_EXECUTION_GRACE_MS = 2 * 60_000;
const UNAVAILABLE = 14;

/**
 * One Cloud Run Job execution per turn, with the turn's variables (RUNNER_ENV) and timeout as overrides.
 * The operation runJob returns is not awaited (it resolves only when the execution ends): the
 * execution is watched with getExecution, backing off, and cancelled with cancelExecution.
 */
export class CloudRunLauncher implements SandboxLauncher {
  readonly name = 'cloudrun';
  readonly sandboxesOutliveProcess = true;
  private readonly watching = new Set<{ stop(): void }>();
  private closed = false;

  constructor(private readonly options: CloudRunLauncherOptions) {}

  async launch(spec: SandboxSpec): Promise<SandboxHandle> {
    return this.watch(await this.runJob({ turnId: spec.turnId, turnToken: spec.token }, spec.timeoutSeconds));
  }

  /**
   * An execution's timeout is fixed when it starts (overrides cannot change it later): a warm one
   * runs for its idle time and its turn's limit together, and its turn's own deadline is held by
   * the lifecycle (the sweeper and readers settle and cancel a turn past it). It is not watched
   * while it waits: a watch polls getExecution whenever the instance has CPU, in bursts against
   * the Admin API's read quota, for an execution no turn may ever need. The instance whose request
   * claims it watches it from then on (reattach); until then its end is never reported here.
   */
  async launchWarm(spec: WarmSandboxSpec): Promise<WarmSandboxHandle> {
    const name = await this.runJob({ sandboxId: spec.sandboxId, poolToken: spec.poolToken }, spec.timeoutSeconds);
    return { ref: name, ended: new Promise<never>(() => {}), cancel: () => this.cancelExecution(name), claimed: () => {} };
  }

  /** Executions outlive the instance that started them. */
  reattach(ref: string): SandboxHandle {
    return this.watch(ref);
  }

  /** A handle on an execution started earlier (by this instance or another). */
  watch(executionName: string): SandboxHandle {
    const o = this.options;
    const watchedFrom = Date.now();
    let pollMs = o.firstPollMs ?? 1000;
    // A handle asked for after close watches nothing: this instance is going away.
    let stopped = this.closed;
    let cancelling = false;
    let wake: () => void = () => {};
    const watcher = {
      stop: () => {
        stopped = true;
        wake();
      },
    };
    this.watching.add(watcher);
    const seenEnd = (async (): Promise<SandboxEnd | undefined> => {
      try {
        while (!stopped) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, pollMs).unref();
          });
          if (stopped) break;
          try {
            const end = await this.status(executionName, watchedFrom);
            if (end !== undefined) return end;
          } catch (error) {
            o.log(`execution ${executionName}: status unavailable: ${(error as Error).message}`);
          }
          // A cancelled execution stops in moments, and its turn waits for that: look often.
          pollMs = cancelling ? CANCEL_POLL_MS : Math.min(pollMs * 2, o.maxPollMs ?? 10_000);
        }
        return undefined;
      } finally {
        this.watching.delete(watcher);
      }
    })();
    // Closed: the execution runs on, so its end is not this instance's to report (see launcher.ts).
    const ended = seenEnd.then((end) => end ?? new Promise<never>(() => {}));
    return {
      ref: executionName,
      ended,
      cancel: async () => {
        cancelling = true;
        pollMs = CANCEL_POLL_MS;
        wake();
        await this.cancelExecution(executionName);
      },
    };
  }

  private async cancelExecution(name: string): Promise<void> {
    try {
      await this.options.executions.cancelExecution({ name });
    } catch (error) {
      // An execution that has already ended cannot be cancelled: that is the end we want.
      if ((error as { code?: number }).code !== FAILED_PRECONDITION) throw error;
    }
  }

  /**
   * One getExecution. An execution not found long after its launch has been deleted (Cloud Run
   * keeps a job's last 1,000 executions: cloud.google.com/run/quotas) and can report nothing any
   * more. Google does not say that a new execution is readable as soon as runJob names it, so
   * soon after the launch "not found" means nothing yet.
   */
  async status(executionName: string, launchedAt: number): Promise<SandboxEnd | undefined> {
    try {
      const [execution] = await this.options.executions.getExecution({ name: executionName });
      return endOf(execution);
    } catch (error) {
      if ((error as { code?: number }).code !== NOT_FOUND) throw error;
      if (Date.now() - launchedAt < NEW_EXECUTION_GRACE_MS) return undefined;
      return { kind: 'exited', exitCode: null, signal: null, outOfMemory: false, detail: 'its execution no longer exists' };
    }
  }

  async close(): Promise<void> {
    // Executions run on in the cloud and report to the API; this instance only stops watching.
    this.closed = true;
    for (const watcher of [...this.watching]) watcher.stop();
  }

  private async runJob(credentials: SandboxCredentials, timeoutSeconds: number): Promise<string> {
    const o = this.options;
    const retries = o.retries ?? 4;
    for (let attempt = 0; ; attempt++) {
      try {
        const [operation] = await o.jobs.runJob({
          name: o.jobName,
          overrides: {
            containerOverrides: [
              {
                // Named, so that the overrides can only ever reach the runner's container.
                name: SANDBOX_CONTAINER_NAME,
                env: Object.entries(runnerEnv(credentials, o.apiUrl)).map(([name, value]) => ({
                  name,
                  value,
                })),
              },
            ],
            taskCount: 1,
            timeout: { seconds: timeoutSeconds },
          },
        });
        const name = (operation.metadata as { name?: string } | null)?.name;
        if (!name) throw new Error('runJob answered without an execution name');
        return name;
      } catch (error) {
        const code = (error as { code?: number }).code;
        const refused = code === RESOURCE_EXHAUSTED || code === UNAVAILABLE;
        if (!refused) throw error;
        if (attempt >= retries) {
          const message = `Cloud Run refused to start a sandbox ${attempt + 1} times (${(error as Error).message}); try again shortly`;
          throw new SandboxUnavailableError(message, message);
        }
        await sleep((o.retryBaseMs ?? 500) * 2 ** attempt);
      }
    }
  }
}

interface ExecutionStatus {
  completionTime?: unknown;
  reconciling?: boolean | null;
  succeededCount?: number | null;
  failedCount?: number | null;
  cancelledCount?: number | null;
  conditions?: Array<{ type?: string | null; message?: string | null; reason?: unknown }> | null;
}

/** How a finished execution ended, in the launcher's terms; undefined while it runs. */
export function endOf(execution: ExecutionStatus): SandboxEnd | undefined {
  if (execution.completionTime === undefined || execution.completionTime === null) return undefined;
  // Google does not order completionTime with the counts across operations; an execution still
  // being acted upon (reconciling) may not have its final counts yet (Execution reference, v2).
  if (execution.reconciling === true) return undefined;
  const at = timeOf(execution.completionTime);
  const when = at === undefined ? {} : { at };
  const completed = execution.conditions?.find((c) => c.type === 'Completed');
  const detail = completed?.message ?? undefined;
  if ((execution.cancelledCount ?? 0) > 0) return { kind: 'cancelled', ...when };
  if ((execution.succeededCount ?? 0) > 0) return { kind: 'exited', exitCode: 0, signal: null, outOfMemory: false, ...when };
  if (detail !== undefined && /timed? ?out|deadline/i.test(detail)) return { kind: 'timed_out', ...when };
  return {
    kind: 'exited',
    exitCode: null,
    signal: null,
    outOfMemory: /memory/i.test(detail ?? ''),
    detail: detail ?? 'the execution failed',
    ...when,
  };
}

/** A protobuf Timestamp as the client library gives it ({seconds, nanos}), or an RFC 3339 string. */
function timeOf(value: unknown): number | undefined {
  if (typeof value === 'string') return Number.isNaN(Date.parse(value)) ? undefined : Date.parse(value);
  if (typeof value === 'object' && value !== null && 'seconds' in value) {
    const { seconds, nanos } = value as { seconds?: unknown; nanos?: unknown };
    const ms = Number(seconds) * 1000 + Math.floor(Number(nanos ?? 0) / 1e6);
    return Number.isFinite(ms) ? ms : undefined;
  }
  return undefined;
}
