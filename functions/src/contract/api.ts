import { z } from 'zod';
import { AUTH_MODES } from './auth.js';
import { LimitName } from './limits.js';
import { toolOfRule } from './tool-rules.js';
import { TurnStatus, Usage } from './turn.js';

/** Public HTTP API (v1): the request and response shapes clients see. */

/**
 * The shape of every conversation and turn id the API gives out (UUIDs) and takes back. An id
 * of another shape names nothing; it never reaches a store (where `a/b` would be a path).
 */
export const ResourceId = z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'not an id this API gives out');

const utf8Bytes = (text: string): number => new TextEncoder().encode(text).length;

/** The largest pieces of an agent's options (AgentOptions). */
export const AGENT_OPTION_LIMITS = { systemPromptBytes: 10 * 1024, toolNames: 50, toolNameChars: 200, maxTurns: 1000 } as const;

/**
 * A tool as Claude Code names it in a permission rule: a name (`Read`, `mcp__server__tool`),
 * optionally with a pattern in parentheses (`Bash(npm test:*)`, `Edit(src/**)`). Each goes to the
 * CLI as one argument: the shape keeps it from ever reading as an option (`--…`) or as two rules.
 */
const ToolName = z
  .string({ error: 'a tool name must be a string' })
  .max(AGENT_OPTION_LIMITS.toolNameChars, `a tool name must be at most ${AGENT_OPTION_LIMITS.toolNameChars} characters`)
  .regex(
    /^[A-Za-z][A-Za-z0-9_-]*(\([^()\p{Cc}]*\))?$/u,
    'a tool name is a name (Read, mcp__server__tool), optionally with a pattern in parentheses (Bash(npm test:*))',
  )
  // The CLI's --tools reads `default` as "every built-in tool".
  .refine((rule) => toolOfRule(rule).toLowerCase() !== 'default', '"default" is not a tool name (the CLI would read it as every tool)');
const ToolNames = z.array(ToolName).max(AGENT_OPTION_LIMITS.toolNames, `at most ${AGENT_OPTION_LIMITS.toolNames} tool names`);

/**
 * How the agent runs a conversation's turns. A conversation keeps the options it was started
 * with; a turn may override any of them for itself. `model` must be one the deployment allows
 * (GET /api/client-config lists them); unset, the deployment's default.
 */
export const AgentOptions = z.strictObject({
  model: z.string({ error: 'model must be a string' }).min(1, 'model must not be empty').max(200, 'model must be at most 200 characters').optional(),
  /** Appended to the agent's own system prompt. */
  systemPrompt: z
    .string({ error: 'systemPrompt must be a string' })
    // Tabs and line breaks are text; other control characters (NUL above all) are not instructions.
    .regex(/^(?:[^\p{Cc}]|[\t\n\r])*$/u, 'systemPrompt must not hold control characters other than tabs and line breaks')
    .refine(
      (text) => utf8Bytes(text) <= AGENT_OPTION_LIMITS.systemPromptBytes,
      `systemPrompt must be at most ${AGENT_OPTION_LIMITS.systemPromptBytes} bytes`,
    )
    .optional(),
  /** The only tools the agent may use; any other is refused when it asks. Unset: all of them. */
  allowedTools: ToolNames.optional(),
  /** Tools taken away from the agent. */
  disallowedTools: ToolNames.optional(),
  /** The most agentic turns (model calls with their tool uses) one prompt may take; the turn stops there, its work kept. */
  maxTurns: z
    .number({ error: 'maxTurns must be a number' })
    .int('maxTurns must be an integer')
    .min(1, 'maxTurns must be at least 1')
    .max(AGENT_OPTION_LIMITS.maxTurns, `maxTurns must be at most ${AGENT_OPTION_LIMITS.maxTurns}`)
    .optional(),
});
export type AgentOptions = z.infer<typeof AgentOptions>;

export const PostConversationRequest = z.strictObject({
  message: z.string({ error: 'message must be a string' }).refine((m) => m.trim().length > 0, 'message must not be empty'),
  conversationId: ResourceId.optional(),
  /** A new conversation's options; with conversationId, this turn's overrides of the conversation's. */
  options: AgentOptions.optional(),
});
export type PostConversationRequest = z.infer<typeof PostConversationRequest>;

/** `POST /api/conversations`: a conversation with no turn yet (a title of its own, or one from its first prompt's words later). */
export const CreateConversationRequest = z.strictObject({
  title: z.string({ error: 'title must be a string' }).max(200, 'title must be at most 200 characters').optional(),
  options: AgentOptions.optional(),
});
export type CreateConversationRequest = z.infer<typeof CreateConversationRequest>;

export const CreatedConversation = z.object({ conversationId: z.string() });
export type CreatedConversation = z.infer<typeof CreatedConversation>;

export const ConversationSummary = z.object({
  conversationId: z.string(),
  title: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type ConversationSummary = z.infer<typeof ConversationSummary>;

export const ListConversationsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(500).optional(),
});

export const TurnView = z.object({
  conversationId: z.string(),
  turnId: z.string(),
  status: TurnStatus,
  text: z.string().nullable(),
  reason: z.string().nullable(),
  usage: Usage,
  costUsd: z.number(),
  durationMs: z.number().nullable(),
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
  /** The fair-use limit that stopped the turn (`daily_tokens`, `daily_cost`), if one did. */
  stoppedBy: LimitName.nullable(),
  /** The connections out its sandbox opened, and the bytes they carried both ways (each one is an `egress` event). */
  egress: z.object({ connections: z.number(), bytes: z.number() }),
});
export type TurnView = z.infer<typeof TurnView>;

/**
 * Where a started turn can be followed. Each is a relative reference (RFC 3986 section 4.2) to
 * be resolved against the URL of the request it answers (section 5), as `Location` is (RFC 9110
 * section 10.2.2): the API may be served under a path it never sees (a function at
 * https://REGION-PROJECT.cloudfunctions.net/NAME gets /NAME stripped), so it cannot write an
 * absolute one. From .../api/conversation, `turn` is `conversations/<id>/turns/<turnId>`.
 */
export const TurnLinks = z.object({ turn: z.string(), events: z.string(), cancel: z.string(), conversation: z.string() });
export type TurnLinks = z.infer<typeof TurnLinks>;

/** The 202 answer of POST /api/conversation with `Prefer: respond-async`; `Location` is `links.turn`. */
export const StartedTurnView = z.object({ conversationId: z.string(), turnId: z.string(), status: TurnStatus, links: TurnLinks });
export type StartedTurnView = z.infer<typeof StartedTurnView>;

export const ConversationList = z.object({ conversations: z.array(ConversationSummary), nextCursor: z.string().nullable() });
export type ConversationList = z.infer<typeof ConversationList>;

/** A conversation with its options and its turns, each with its prompt and the options it ran with. */
export const ConversationView = ConversationSummary.extend({
  options: AgentOptions,
  turns: z.array(TurnView.extend({ prompt: z.string(), options: AgentOptions })),
});
export type ConversationView = z.infer<typeof ConversationView>;

/** `GET /api/usage`: the caller's spending today (UTC) and the limits that apply to them. */
export const UsageView = z.object({
  day: z.string(),
  turns: z.number(),
  tokens: z.number(),
  costUsd: z.number(),
  /** Bytes the user's sandboxes carried out and in through egress today. */
  egressBytes: z.number(),
  runningTurns: z.number(),
  limits: z.object({
    runningTurns: z.number(),
    turnsPerMinute: z.number(),
    dailyTokens: z.number().nullable(),
    dailyCostUsd: z.number().nullable(),
    dailyEgressBytes: z.number().nullable(),
  }),
  resetsAt: z.string(),
});
export type UsageView = z.infer<typeof UsageView>;

/** What an entry of a conversation's workspace is; symlinks and hard links are listed, never followed. */
export const WorkspaceEntryType = z.enum(['file', 'directory', 'symlink', 'hardlink', 'other']);
export type WorkspaceEntryType = z.infer<typeof WorkspaceEntryType>;

export const WorkspaceFile = z.object({
  /** Relative to the workspace. */
  path: z.string(),
  type: WorkspaceEntryType,
  size: z.number().int().nonnegative(),
  /** Null when the archive's time is not a date. */
  modifiedAt: z.string().nullable(),
  /** What a symlink or hard link points to, as stored. */
  target: z.string().optional(),
});
export type WorkspaceFile = z.infer<typeof WorkspaceFile>;

/** The workspace as of its last stored state (a turn's that succeeded, or an upload). */
export const WorkspaceListing = z.object({ files: z.array(WorkspaceFile), truncated: z.boolean() });
export type WorkspaceListing = z.infer<typeof WorkspaceListing>;

export const ArchiveQuery = z.strictObject({ format: z.enum(['tar.gz', 'zip']).default('tar.gz') });

export const ErrorCode = z.enum([
  'invalid_request',
  'unauthenticated',
  /** The deployment does not allow it (a sandbox's connection out, by policy or cap). */
  'forbidden',
  'not_found',
  'conflict',
  'too_large',
  'rate_limited',
  'sandbox_failed',
  'timed_out',
  'unavailable',
  'internal',
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

export const ErrorBody = z.object({
  error: z.object({ code: ErrorCode, message: z.string(), details: z.record(z.string(), z.unknown()).optional() }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

/** How a caller may be authenticated (auth.ts). */
export const AuthMode = z.enum(AUTH_MODES);
export type AuthMode = z.infer<typeof AuthMode>;

/** The modes that may face the internet: `header` trusts X-User-Id, for local use only. */
export const CloudAuthMode = AuthMode.exclude([AuthMode.enum.header]);
export type CloudAuthMode = z.infer<typeof CloudAuthMode>;

/**
 * GET /api/client-config (no sign-in needed): what the web page needs before anyone signs in.
 * `firebase` is set when email and password sign-in is possible (firebase mode with a Web API key);
 * the page then signs in at `{authUrl}/v1/accounts:signInWithPassword?key={apiKey}` and renews the
 * ID token at `{tokenUrl}/v1/token?key={apiKey}`.
 */
export const ClientConfig = z.object({
  authModes: z.array(AuthMode),
  firebase: z.object({ apiKey: z.string(), projectId: z.string(), authUrl: z.string(), tokenUrl: z.string() }).nullable(),
  /** The models a conversation may pick (AgentOptions.model), and the one it gets when it picks none. */
  models: z.array(z.string()),
  defaultModel: z.string(),
});
export type ClientConfig = z.infer<typeof ClientConfig>;
