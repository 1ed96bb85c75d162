import { z } from 'zod';

/**
 * What the model proxy lets a sandbox ask of the upstream with the real key: the Messages API's
 * two calls the agent makes, with a body this deployment allows. Everything else is refused
 * before it reaches the upstream: other endpoints (batches and files are not metered), models
 * not allowed, more output than the cap, and whatever would make the upstream reach the
 * internet for the sandbox (server-side tools, MCP servers, URL sources).
 */

export interface ModelPolicy {
  /** Models a sandbox may ask for. */
  models: readonly string[];
  /** The largest `max_tokens` of one call: it also bounds how far one call can overshoot a budget. */
  maxOutputTokens: number;
  /** Calls one turn may have in flight at once: with the cap above, how far a turn can overshoot a budget. */
  maxCallsInFlight: number;
  /**
   * Request bytes one user's sandboxes may send the proxy per minute: each is parsed and checked
   * (about 40 ms a megabyte) before it can be refused.
   */
  requestBytesPerMinute: number;
}

/** The upstream paths the proxy serves, by the proxy's own path under /internal/model. */
export const PROXIED_CALLS = {
  '/v1/messages': 'messages',
  '/v1/messages/count_tokens': 'count_tokens',
} as const;
export type ProxiedCall = (typeof PROXIED_CALLS)[keyof typeof PROXIED_CALLS];

/**
 * `anthropic-beta` values forwarded: those the pinned CLI sends (seen on its requests), and
 * none that turns on a server-side capability (MCP client, code execution, files, web fetch).
 */
export const ALLOWED_BETAS: ReadonlySet<string> = new Set([
  'claude-code-20250219',
  'interleaved-thinking-2025-05-14',
  'context-management-2025-06-27',
  'per-turn-control-2026-07-01',
  'mid-conversation-tool-changes-2026-07-01',
  'thinking-token-count-2026-05-13',
  'advanced-tool-use-2025-11-20',
  'effort-2025-11-24',
  'fine-grained-tool-streaming-2025-05-14',
  'token-efficient-tools-2025-02-19',
  'prompt-caching-2024-07-31',
]);

/** The allowed values of an `anthropic-beta` header, or undefined when none is left. */
export function allowedBetas(header: string | undefined): string | undefined {
  const kept = (header ?? '')
    .split(',')
    .map((value) => value.trim())
    .filter((value) => ALLOWED_BETAS.has(value));
  return kept.length === 0 ? undefined : [...new Set(kept)].join(',');
}

/** A tool the agent runs itself (no `type`, or `custom`); a typed tool runs at the upstream. */
const ClientTool = z.looseObject({
  name: z.string(),
  type: z.literal('custom', { error: (issue) => `server-side tools are not allowed (tool type ${JSON.stringify(issue.input)})` }).optional(),
});

const common = {
  model: z.string(),
  messages: z.array(z.looseObject({ role: z.string(), content: z.unknown() })),
  system: z.unknown().optional(),
  tools: z.array(ClientTool).optional(),
  tool_choice: z.unknown().optional(),
  thinking: z.unknown().optional(),
  context_management: z.unknown().optional(),
  output_config: z.unknown().optional(),
};

/** Unknown fields are refused: a new field could turn on something the upstream does for us. */
const strictly = {
  error: (issue: { code: string; keys?: string[] }) =>
    issue.code === 'unrecognized_keys' ? `field(s) not allowed: ${(issue.keys ?? []).join(', ')}` : undefined,
};

const MessagesBody = z.strictObject(
  {
    ...common,
    max_tokens: z.number().int().positive(),
    metadata: z.unknown().optional(),
    stream: z.boolean().optional(),
    temperature: z.number().optional(),
    top_p: z.number().optional(),
    top_k: z.number().optional(),
    stop_sequences: z.array(z.string()).optional(),
    service_tier: z.enum(['auto', 'standard_only']).optional(),
  },
  strictly,
);
const CountTokensBody = z.strictObject(common, strictly);

/** Content sources the upstream reads from the request itself; `url` and `file` make it fetch. */
const INLINE_SOURCES = new Set(['base64', 'text', 'content']);

export type PolicyVerdict =
  /** `maxTokens` is the most output the call may bill (0 for count_tokens). */
  { ok: true; body: string; model: string; maxTokens: number } | { ok: false; message: string };

/**
 * Checks a request body against the policy. The body forwarded is the one checked, written
 * out again, so that the upstream cannot read it differently (duplicate keys, say).
 */
export function checkModelRequest(call: ProxiedCall, bytes: Buffer, policy: ModelPolicy): PolicyVerdict {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { ok: false, message: 'the request body is not JSON' };
  }
  const parsed = (call === 'messages' ? MessagesBody : CountTokensBody).safeParse(json);
  if (!parsed.success) {
    return { ok: false, message: parsed.error.issues.map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ') };
  }
  const body = parsed.data;
  if (!policy.models.includes(body.model)) {
    return { ok: false, message: `model ${JSON.stringify(body.model)} is not allowed here; allowed: ${policy.models.join(', ')}` };
  }
  const maxTokens = 'max_tokens' in body ? Number(body.max_tokens) : 0;
  if (maxTokens > policy.maxOutputTokens) {
    return { ok: false, message: `max_tokens ${maxTokens} is over this deployment's limit of ${policy.maxOutputTokens}` };
  }
  const problem = contentProblem(body.messages.map((m) => m.content)) ?? contentProblem(body.system);
  if (problem !== undefined) return { ok: false, message: problem };
  try {
    return { ok: true, body: JSON.stringify(body), model: body.model, maxTokens };
  } catch {
    // Only a structure nested deeper than the stack allows fails to be written out.
    return { ok: false, message: 'the request body nests too deeply' };
  }
}

/** Content nests a few levels (tool results and documents hold blocks); far deeper is not a request. */
const MAX_DEPTH = 16;
/** Blocks that name something the upstream would fetch or look up rather than carry it. */
const FETCHING_BLOCKS = new Set(['container_upload', 'mcp_tool_use', 'server_tool_use']);

/**
 * What in the content the upstream would have to fetch (a URL, an uploaded file), if anything.
 * It walks content blocks only (never a tool call's input, which is the agent's own data).
 */
function contentProblem(content: unknown, depth = 0): string | undefined {
  if (!Array.isArray(content)) return undefined;
  if (depth > MAX_DEPTH) return `content nests deeper than ${MAX_DEPTH} levels`;
  for (const item of content) {
    if (Array.isArray(item)) {
      const problem = contentProblem(item, depth + 1);
      if (problem !== undefined) return problem;
      continue;
    }
    if (typeof item !== 'object' || item === null) continue;
    const block = item as { type?: unknown; source?: unknown; content?: unknown };
    if (typeof block.type === 'string' && FETCHING_BLOCKS.has(block.type)) return `content blocks of type ${block.type} are not allowed`;
    if (typeof block.source === 'object' && block.source !== null) {
      const source = block.source as { type?: unknown; content?: unknown };
      if (typeof source.type !== 'string' || !INLINE_SOURCES.has(source.type)) {
        return `content sources of type ${JSON.stringify(source.type)} are not allowed (the upstream would fetch them); send the content inline`;
      }
      const problem = contentProblem(source.content, depth + 1);
      if (problem !== undefined) return problem;
    }
    const problem = contentProblem(block.content, depth + 1);
    if (problem !== undefined) return problem;
  }
  return undefined;
}
