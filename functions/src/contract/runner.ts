import { z } from 'zod';
import { AgentOptions } from './api.js';
import { RUNNER_LIMITS } from './runner-limits.js';
import { TurnEventType } from './event-types.js';
import { TextData, TextDeltaData, ToolResultData, ToolUseData } from './events.js';

/**
 * The internal API between the API and the runner inside a sandbox. The API validates what the
 * (untrusted) runner sends with these schemas; the runner imports only their types, so that zod's
 * start-up cost stays out of every sandbox: the values it needs are in the modules that import
 * nothing (runner-env.ts, runner-limits.ts, runner-paths.ts, sandbox-layout.ts).
 */

export const RunnerTurn = z.object({
  turnId: z.string(),
  conversationId: z.string(),
  prompt: z.string(),
  /** Agent session to resume; null on a conversation's first turn. */
  sessionId: z.string().nullable(),
  /** Whether a state archive (session + workspace) exists to restore. */
  hasState: z.boolean(),
  /** The agent's models (the turn's choice, else the deployment's): the model proxy refuses any other. */
  model: z.string(),
  smallFastModel: z.string(),
  /** The largest output of one model call the proxy allows. */
  maxOutputTokens: z.number().int().positive(),
  maxStateBytes: z.number().int().positive(),
  /** What a restored state may expand to (the sandbox's disk): the runner stops extracting past it. */
  maxRestoreBytes: z.number().int().positive(),
  /** Whether the CLI may send its experimental betas (not to Vertex AI: AgentSettings.experimentalBetas). */
  experimentalBetas: z.boolean(),
  /** How often to post a text block's later deltas (AgentSettings.textDeltaEveryMs). */
  textDeltaEveryMs: z.number().int().positive(),
  /** The rest of the turn's options (the model is above), for the CLI's flags. */
  options: AgentOptions.omit({ model: true }),
});
export type RunnerTurn = z.infer<typeof RunnerTurn>;

/**
 * What a warm sandbox's runner hears when it asks for its turn (a long poll): the turn that
 * claimed it, with the turn's token, which it gets here and nowhere else; `wait`, ask again; or
 * `gone`, no turn will come (its time is up, or it was stopped), and the runner ends.
 */
export const WarmClaimAnswer = z.discriminatedUnion('claim', [
  z.object({ claim: z.literal('turn'), turnToken: z.string(), turn: RunnerTurn }),
  z.object({ claim: z.literal('wait') }),
  z.object({ claim: z.literal('gone') }),
]);
export type WarmClaimAnswer = z.infer<typeof WarmClaimAnswer>;

/** The agent's session ids are UUIDs; the next turn passes one to `claude --resume`. */
const SessionId = z.uuid({ error: "sessionId must be the agent session's UUID" });

/** The longest answer kept (see RUNNER_LIMITS). */
export const MAX_RESULT_TEXT_CHARS = RUNNER_LIMITS.resultTextChars;

export const RunnerResult = z.discriminatedUnion('outcome', [
  z.object({
    outcome: z.literal('succeeded'),
    text: z.string(),
    sessionId: SessionId,
    /** Whether the runner uploaded a new state archive for this turn. */
    stateSaved: z.boolean(),
    numTurns: z.number().int().nonnegative().optional(),
    /** The agent stopped before it was done, at the turn's maxTurns; its work so far is saved. */
    stopReason: z.literal('max_turns').optional(),
  }),
  z.object({
    outcome: z.literal('failed'),
    reason: z.string().max(RUNNER_LIMITS.reasonChars),
    text: z.string().optional(),
    sessionId: SessionId.optional(),
  }),
]);
export type RunnerResult = z.infer<typeof RunnerResult>;

/**
 * Progress the runner reports while the agent works: steps of the turn's stream (events.ts), flat.
 * The API adds status and result events itself.
 */
export const AgentEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal(TurnEventType.text), ...TextData.shape }),
  z.object({ type: z.literal(TurnEventType.text_delta), ...TextDeltaData.shape }),
  z.object({ type: z.literal(TurnEventType.tool_use), ...ToolUseData.shape }),
  z.object({ type: z.literal(TurnEventType.tool_result), ...ToolResultData.shape }),
]);
export type AgentEvent = z.infer<typeof AgentEvent>;

export const AgentEvents = z.object({ events: z.array(AgentEvent).min(1).max(RUNNER_LIMITS.eventsPerBatch) });
export type AgentEvents = z.infer<typeof AgentEvents>;
