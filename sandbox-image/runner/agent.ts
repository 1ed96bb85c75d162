import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { toolOfRule } from '../../functions/src/contract/tool-rules.js';
import type { RunnerTurn } from '../../functions/src/contract/runner.js';
import { RUNNER_ENV } from '../../functions/src/contract/runner-env.js';
import { RUNNER_LIMITS, tailOf } from '../../functions/src/contract/runner-limits.js';
import { SANDBOX_LAYOUT } from '../../functions/src/contract/sandbox-layout.js';

/** The outcome of one headless Claude Code run. */
export type AgentOutcome =
  /** `stopReason` is set when the agent stopped at its maxTurns before it was done. */
  | { ok: true; text: string; sessionId: string; numTurns: number; stopReason?: 'max_turns' }
  | { ok: false; reason: string; sessionId?: string; text?: string };

export interface AgentRun {
  prompt: string;
  resumeSessionId: string | null;
  model: string;
  smallFastModel: string;
  maxOutputTokens: number;
  /** The turn's options for the CLI's flags (the model is above). */
  options: RunnerTurn['options'];
  experimentalBetas: boolean;
  modelBaseUrl: string;
  token: string;
  /** The egress proxy on loopback, for the agent's tools (npm, pip, git, curl). */
  proxyUrl?: string;
  /** Receives each stream-json line the agent prints (for progress reporting). */
  onEvent?: (event: Record<string, unknown>) => void;
}

/** Installed beside the runner in every sandbox (local and image): see oom-first.sh. */
const SHELL_PREFIX = SANDBOX_LAYOUT.shellPrefix;

/** The agent's environment: the runner's own variables are not passed on (the token goes on only as the model key). */
export function agentEnvironment(
  run: Omit<AgentRun, 'prompt' | 'resumeSessionId' | 'onEvent' | 'options'>,
  base: NodeJS.ProcessEnv,
): NodeJS.ProcessEnv {
  const rest = { ...base };
  for (const name of Object.values(RUNNER_ENV)) delete rest[name];
  return {
    ...rest,
    ANTHROPIC_BASE_URL: run.modelBaseUrl,
    // The turn token stands in for the model key: the API swaps in the real key.
    ANTHROPIC_API_KEY: run.token,
    DISABLE_TELEMETRY: '1',
    DISABLE_ERROR_REPORTING: '1',
    DISABLE_AUTOUPDATER: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    // Every model the CLI may pick (by alias, for side calls, for subagents) is one the model
    // proxy allows, and no call asks for more output than it allows.
    ANTHROPIC_MODEL: run.model,
    ANTHROPIC_DEFAULT_OPUS_MODEL: run.model,
    ANTHROPIC_DEFAULT_SONNET_MODEL: run.model,
    ANTHROPIC_DEFAULT_HAIKU_MODEL: run.smallFastModel,
    ANTHROPIC_SMALL_FAST_MODEL: run.smallFastModel,
    CLAUDE_CODE_SUBAGENT_MODEL: run.model,
    CLAUDE_CODE_MAX_OUTPUT_TOKENS: String(run.maxOutputTokens),
    // Vertex AI refuses a call with a beta it does not know: the CLI then sends only the ones it
    // sends Vertex itself, and none of the request fields that go with the others.
    ...(run.experimentalBetas ? {} : { CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS: '1' }),
    ...(run.proxyUrl !== undefined ? proxyEnvironment(run.proxyUrl, run.modelBaseUrl) : {}),
    ...(existsSync(SHELL_PREFIX) ? { CLAUDE_CODE_SHELL_PREFIX: SHELL_PREFIX } : {}),
  };
}

/**
 * Both spellings: curl reads only the lower-case http_proxy, most others either. The model proxy
 * stays direct (in the cloud it is the API's own host, which the egress policy need not allow).
 */
function proxyEnvironment(url: string, modelBaseUrl: string): NodeJS.ProcessEnv {
  const direct = [...new Set(['localhost', '127.0.0.1', new URL(modelBaseUrl).hostname])].join(',');
  return { HTTPS_PROXY: url, HTTP_PROXY: url, https_proxy: url, http_proxy: url, NO_PROXY: direct, no_proxy: direct };
}

/**
 * The CLI's arguments for a turn, each value its own argument (never a shell line); the API's
 * schema keeps every tool name from reading as an option. The instructions go in a file
 * (`systemPromptFile`, written by runAgent), not on the command line, which the host can read.
 */
export function agentArguments(run: Pick<AgentRun, 'resumeSessionId' | 'model' | 'options'> & { systemPromptFile?: string }): string[] {
  const { allowedTools, disallowedTools, maxTurns } = run.options;
  const args = ['-p', '--output-format', 'stream-json', '--verbose', '--include-partial-messages', '--model', run.model];
  if (allowedTools === undefined) {
    args.push('--dangerously-skip-permissions');
  } else {
    // Skipping permissions would allow every tool: instead only the listed built-in ones are
    // offered (--tools takes their names) and, of those, only calls their patterns allow run
    // (dontAsk refuses the others rather than asking anyone).
    const names = [...new Set(allowedTools.map(toolOfRule).filter((name) => !name.startsWith('mcp__')))];
    args.push('--permission-mode', 'dontAsk', '--tools', names.join(','));
    if (allowedTools.length > 0) args.push('--allowedTools', ...allowedTools);
  }
  if (disallowedTools !== undefined && disallowedTools.length > 0) args.push('--disallowedTools', ...disallowedTools);
  if (allowedTools !== undefined || disallowedTools !== undefined) {
    // A restriction must hold against the workspace and home, which the agent writes and the
    // next turn restores: their Claude Code settings (permission rules, hooks that run commands)
    // and MCP servers are not loaded.
    args.push('--setting-sources', '', '--strict-mcp-config');
  }
  if (maxTurns !== undefined) args.push('--max-turns', String(maxTurns));
  // Every turn runs with its own instructions: by default the CLI keeps the first turn's system
  // prompt for the whole session, whatever a later turn passes.
  args.push('--system-prompt-snapshot', 'off');
  if (run.systemPromptFile !== undefined) args.push('--append-system-prompt-file', run.systemPromptFile);
  if (run.resumeSessionId !== null) args.push('--resume', run.resumeSessionId);
  return args;
}

/** Writes the turn's instructions where only the sandbox sees them (its own /tmp); undefined when there are none. */
function writeSystemPrompt(systemPrompt: string | undefined): string | undefined {
  if (systemPrompt === undefined || systemPrompt === '') return undefined;
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'clauderun-instructions-')), 'system-prompt.txt');
  writeFileSync(file, systemPrompt, { mode: 0o600 });
  return file;
}

export function runAgent(run: AgentRun): Promise<AgentOutcome> {
  const systemPromptFile = writeSystemPrompt(run.options.systemPrompt);
  // The prompt goes through stdin: argv is limited to 128 KiB per argument.
  const child = spawn('claude', agentArguments({ ...run, ...(systemPromptFile === undefined ? {} : { systemPromptFile }) }), {
    env: agentEnvironment(run, process.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.end(run.prompt);

  let sessionId: string | undefined;
  let result: Record<string, unknown> | undefined;
  let pending = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const event = parseLine(line);
      if (event === undefined) continue;
      if (typeof event.session_id === 'string') sessionId = event.session_id;
      if (event.type === 'result') result = event;
      run.onEvent?.(event);
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr = tailOf(stderr + chunk, RUNNER_LIMITS.reasonChars);
  });

  return new Promise((resolve) => {
    child.once('error', (error) => resolve({ ok: false, reason: `could not start the agent: ${error.message}` }));
    child.once('close', (code, signal) => {
      const tail = pending.trim() === '' ? undefined : parseLine(pending);
      if (tail?.type === 'result') result = tail;
      if (result === undefined) {
        // Inside the sandbox only the kernel's OOM killer (or the agent's own tools) sends SIGKILL.
        const how =
          signal === 'SIGKILL'
            ? 'was killed by SIGKILL (out of memory, most likely)'
            : signal !== null
              ? `was killed by ${signal}`
              : `exited with code ${code}`;
        // The end of what the agent said is what tells why: it is kept, and its start cut.
        const said = `the agent ${how} without a result`;
        const last = tailOf(stderr.trim(), RUNNER_LIMITS.reasonChars - said.length - 2);
        resolve({ ok: false, reason: last ? `${said}: ${last}` : said, ...(sessionId ? { sessionId } : {}) });
        return;
      }
      const text = typeof result.result === 'string' ? result.result : '';
      const numTurns = typeof result.num_turns === 'number' ? result.num_turns : 0;
      // Stopped at maxTurns: the session is whole and worth keeping; the next prompt continues it.
      if (result.subtype === 'error_max_turns' && sessionId !== undefined) {
        resolve({ ok: true, text, sessionId, numTurns, stopReason: 'max_turns' });
        return;
      }
      if (result.is_error === true || result.subtype !== 'success' || sessionId === undefined) {
        const errors = Array.isArray(result.errors) ? result.errors.map(String).join('; ') : '';
        const reason = `the agent reported an error (${String(result.subtype)})${errors ? `: ${errors}` : text ? `: ${text}` : ''}`;
        resolve({ ok: false, reason: reason.slice(0, RUNNER_LIMITS.reasonChars), text, ...(sessionId ? { sessionId } : {}) });
        return;
      }
      resolve({ ok: true, text, sessionId, numTurns });
    });
  });
}

function parseLine(line: string): Record<string, unknown> | undefined {
  if (line.trim() === '') return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
