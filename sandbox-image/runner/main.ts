import { runAgent } from './agent.js';
import { Readable } from 'node:stream';
import { ApiError, claimTurn, RunnerApi } from './api-client.js';
import { apiTunnels, startEgressProxy } from './egress-proxy.js';
import { DELTA_BATCHING, ProgressReporter, progressEvents, textDelta } from './progress.js';
import { archiveState, restoreState, StateTooLargeError } from './state.js';
import type { RunnerResult, RunnerTurn } from '../../functions/src/contract/runner.js';
import { RUNNER_ENV } from '../../functions/src/contract/runner-env.js';
import { cutToLimit, RUNNER_LIMITS } from '../../functions/src/contract/runner-limits.js';
import { SANDBOX_LAYOUT } from '../../functions/src/contract/sandbox-layout.js';

/** A failed result the API takes: a longer reason would have the whole result refused, and the turn's end lost. */
const failed = (reason: string, text?: string): RunnerResult => ({
  outcome: 'failed',
  reason: cutToLimit(reason, RUNNER_LIMITS.reasonChars),
  ...(text !== undefined ? { text } : {}),
});

/**
 * How long the runner waits, once the agent is done, for the API to record the connections out
 * that are still closing; one still in use then (a tool left running) is cut, and its event may
 * come too late to be kept.
 */
const TUNNELS_SETTLE_MS = 5_000;

/**
 * The in-sandbox runner. It knows the API's URL and either its turn and the turn's token or, in a
 * warm sandbox, its pool token (RUNNER_ENV), and talks only to the API: get the turn, restore the
 * conversation's state, run the agent, save, report.
 */
async function main(): Promise<number> {
  const apiUrl = process.env[RUNNER_ENV.apiUrl];
  if (!apiUrl) {
    console.error(`runner: ${RUNNER_ENV.apiUrl} must be set`);
    return 2;
  }
  const start = await turnToRun(apiUrl);
  if (start === 'usage') {
    console.error(`runner: ${RUNNER_ENV.turnId} and ${RUNNER_ENV.turnToken}, or ${RUNNER_ENV.sandboxId} and ${RUNNER_ENV.poolToken}, must be set`);
    return 2;
  }
  // A warm sandbox no turn claimed in its time ends quietly: it was never used.
  if (start === undefined) return 0;
  const { api, turn, token } = start;
  const turnId = turn.turnId;
  const home = process.env.HOME ?? SANDBOX_LAYOUT.home;
  const workspace = process.cwd();

  let result: RunnerResult;
  try {
    if (turn.hasState) {
      const archive = await api.getState(turn.maxStateBytes);
      if (archive !== undefined) await restoreState(Readable.from([archive]), { home, workspace }, turn.maxRestoreBytes);
    }
    const progress = new ProgressReporter((events) => api.postEvents(events), { ...DELTA_BATCHING, everyMs: turn.textDeltaEveryMs });
    // Up before the agent, so that its first tool finds it.
    const tunnels = apiTunnels(apiUrl, turnId, token);
    const proxy = await startEgressProxy(tunnels.open);
    const outcome = await runAgent({
      prompt: turn.prompt,
      resumeSessionId: turn.sessionId,
      model: turn.model,
      smallFastModel: turn.smallFastModel,
      maxOutputTokens: turn.maxOutputTokens,
      options: turn.options,
      experimentalBetas: turn.experimentalBetas,
      modelBaseUrl: api.modelBaseUrl,
      token,
      proxyUrl: proxy.url,
      onEvent: (line) => {
        const delta = textDelta(line);
        if (delta === undefined) progress.push(progressEvents(line));
        else progress.pushDelta(delta);
      },
    }).finally(async () => {
      proxy.close();
      await tunnels.settled(TUNNELS_SETTLE_MS);
    });
    // The state is archived and uploaded while the last progress goes out: neither needs the
    // other, and the result follows both.
    const saving = outcome.ok ? saveState(api, { home, workspace }, turn.maxStateBytes) : undefined;
    saving?.catch(() => {}); // its failure is taken below, once the progress is out
    await progress.flush();
    if (outcome.ok) {
      const archive = await saving!;
      if (!archive.ok) {
        result = failed(archive.reason, outcome.text);
      } else {
        result = {
          outcome: 'succeeded',
          text: outcome.text,
          sessionId: outcome.sessionId,
          stateSaved: true,
          numTurns: outcome.numTurns,
          ...(outcome.stopReason === undefined ? {} : { stopReason: outcome.stopReason }),
        };
      }
    } else {
      result = failed(outcome.reason, outcome.text);
    }
  } catch (error) {
    // A state refused for its size is the sandbox's verdict, not a runner error.
    const reason = error instanceof StateTooLargeError ? error.message : `runner error: ${(error as Error).message}`;
    result = failed(reason);
  }
  try {
    await api.postResult(result);
  } catch (error) {
    // Cancelled or timed out while the agent worked: the API keeps the turn as it ended.
    if (error instanceof ApiError && error.status === 409) {
      console.error(`runner: the result was not taken: ${error.message}`);
      return 0;
    }
    throw error;
  }
  return 0;
}

/** Archives the conversation's state within its limit and uploads it; a state over the limit is not uploaded. */
async function saveState(api: RunnerApi, trees: { home: string; workspace: string }, maxBytes: number) {
  const archive = await archiveState(trees, maxBytes);
  if (archive.ok) await api.putState(archive.data);
  return archive;
}

/**
 * The turn this sandbox runs: the one it was started for (its turn and token are in the
 * environment), or, in a warm sandbox, the one that claims it, which the API hands over with its
 * token; undefined when none did in the warm sandbox's time.
 */
async function turnToRun(apiUrl: string): Promise<{ api: RunnerApi; turn: RunnerTurn; token: string } | 'usage' | undefined> {
  const turnId = process.env[RUNNER_ENV.turnId];
  const token = process.env[RUNNER_ENV.turnToken];
  if (turnId && token) {
    const api = new RunnerApi(apiUrl, turnId, token);
    return { api, turn: await api.getTurn(), token };
  }
  const sandboxId = process.env[RUNNER_ENV.sandboxId];
  const poolToken = process.env[RUNNER_ENV.poolToken];
  if (!sandboxId || !poolToken) return 'usage';
  const claimed = await claimTurn(apiUrl, sandboxId, poolToken);
  if (claimed === undefined) return undefined;
  return { api: new RunnerApi(apiUrl, claimed.turn.turnId, claimed.token), turn: claimed.turn, token: claimed.token };
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`runner: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  },
);
