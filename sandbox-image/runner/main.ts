import { runAgent } from './agent.js';
import { Readable } from 'node:stream';
import { ApiError, RunnerApi } from './api-client.js';
import { ProgressReporter, progressEvents } from './progress.js';
import { archiveState, restoreState, StateTooLargeError } from './state.js';
import type { RunnerResult } from '../../functions/src/contract/runner.js';

/**
 * The in-sandbox runner. It knows three things (TURN_ID, API_URL, TURN_TOKEN) and talks only to
 * the API: fetch the turn, restore the conversation's state, run the agent, save, report.
 */
async function main(): Promise<number> {
  const { TURN_ID, API_URL, TURN_TOKEN } = process.env;
  if (!TURN_ID || !API_URL || !TURN_TOKEN) {
    console.error('runner: TURN_ID, API_URL and TURN_TOKEN must be set');
    return 2;
  }
  const api = new RunnerApi(API_URL, TURN_ID, TURN_TOKEN);
  const turn = await api.getTurn();
  const home = process.env.HOME ?? '/home/agent';
  const workspace = process.cwd();

  let result: RunnerResult;
  try {
    if (turn.hasState) {
      const archive = await api.getState(turn.maxStateBytes);
      if (archive !== undefined) await restoreState(Readable.from([archive]), turn.maxRestoreBytes);
    }
    const progress = new ProgressReporter((events) => api.postEvents(events));
    const outcome = await runAgent({
      prompt: turn.prompt,
      resumeSessionId: turn.sessionId,
      model: turn.model,
      smallFastModel: turn.smallFastModel,
      maxOutputTokens: turn.maxOutputTokens,
      modelBaseUrl: api.modelBaseUrl,
      token: TURN_TOKEN,
      onEvent: (line) => progress.push(progressEvents(line)),
    });
    await progress.flush();
    if (outcome.ok) {
      const archive = await archiveState({ home, workspace }, turn.maxStateBytes);
      if (!archive.ok) {
        result = { outcome: 'failed', reason: archive.reason, text: outcome.text };
      } else {
        await api.putState(archive.data);
        result = { outcome: 'succeeded', text: outcome.text, sessionId: outcome.sessionId, stateSaved: true, numTurns: outcome.numTurns };
      }
    } else {
      result = { outcome: 'failed', reason: outcome.reason, ...(outcome.text !== undefined ? { text: outcome.text } : {}) };
    }
  } catch (error) {
    // A state refused for its size is the sandbox's verdict, not a runner error.
    const reason = error instanceof StateTooLargeError ? error.message : `runner error: ${(error as Error).message}`;
    result = { outcome: 'failed', reason: reason.slice(0, 2000) };
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
