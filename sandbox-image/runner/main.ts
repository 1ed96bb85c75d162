import { runAgent } from './agent.js';
import { Readable } from 'node:stream';
import { ApiError, RunnerApi } from './api-client.js';
import { apiTunnels, startEgressProxy } from './egress-proxy.js';
import { DELTA_BATCHING, ProgressReporter, progressEvents, textDelta } from './progress.js';
import { archiveState, restoreState, StateTooLargeError } from './state.js';
import type { RunnerResult } from '../../functions/src/contract/runner.js';
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
 * The in-sandbox runner. It knows three things (RUNNER_ENV: the turn, the API's URL, the turn's
 * token) and talks only to the API: fetch the turn, restore the conversation's state, run the
 * agent, save, report.
 */
async function main(): Promise<number> {
  const turnId = process.env[RUNNER_ENV.turnId];
  const apiUrl = process.env[RUNNER_ENV.apiUrl];
  const token = process.env[RUNNER_ENV.turnToken];
  if (!turnId || !apiUrl || !token) {
    console.error(`runner: ${Object.values(RUNNER_ENV).join(', ')} must be set`);
    return 2;
  }
  const api = new RunnerApi(apiUrl, turnId, token);
  const turn = await api.getTurn();
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
    await progress.flush();
    if (outcome.ok) {
      const archive = await archiveState({ home, workspace }, turn.maxStateBytes);
      if (!archive.ok) {
        result = failed(archive.reason, outcome.text);
      } else {
        await api.putState(archive.data);
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

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`runner: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  },
);
