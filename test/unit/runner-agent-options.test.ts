import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AgentEvent } from '../../functions/src/contract/runner.js';
import { RUNNER_LIMITS } from '../../functions/src/contract/runner-limits.js';
import { agentArguments } from '../../sandbox-image/runner/agent.js';
import { ProgressReporter, textDelta } from '../../sandbox-image/runner/progress.js';

describe("the CLI's arguments for a turn's options", () => {
  const base = { resumeSessionId: null, model: 'claude-test' };

  it('skips permissions and passes nothing else when the turn has no options', () => {
    const args = agentArguments({ ...base, options: {} });
    expect(args).toContain('--dangerously-skip-permissions');
    expect(args).toEqual(expect.arrayContaining(['--include-partial-messages', '--model', 'claude-test']));
    for (const flag of ['--allowedTools', '--disallowedTools', '--max-turns', '--append-system-prompt-file', '--tools', '--setting-sources']) {
      expect(args).not.toContain(flag);
    }
  });

  it('gives each value as its own argument, after its flag, and the instructions only as a file', () => {
    const systemPrompt = 'line one\n--dangerously-skip-permissions; $(rm -rf /)';
    const args = agentArguments({
      ...base,
      resumeSessionId: '0b8f0d4e-8a53-4a0e-9a5b-2d0b1f1f2a3c',
      options: { systemPrompt, disallowedTools: ['Write', 'Bash(rm:*)'], maxTurns: 7 },
      systemPromptFile: '/tmp/x/system-prompt.txt',
    });
    expect(args[args.indexOf('--append-system-prompt-file') + 1]).toBe('/tmp/x/system-prompt.txt');
    expect(args.join(' ')).not.toContain('line one');
    expect(args.slice(args.indexOf('--disallowedTools'), args.indexOf('--disallowedTools') + 3)).toEqual([
      '--disallowedTools',
      'Write',
      'Bash(rm:*)',
    ]);
    expect(args[args.indexOf('--max-turns') + 1]).toBe('7');
    expect(args[args.indexOf('--resume') + 1]).toBe('0b8f0d4e-8a53-4a0e-9a5b-2d0b1f1f2a3c');
    expect(args.slice(args.indexOf('--system-prompt-snapshot'), args.indexOf('--system-prompt-snapshot') + 2)).toEqual([
      '--system-prompt-snapshot',
      'off',
    ]);
  });

  it('with allowed tools, offers only their tools and refuses what their patterns do not allow, instead of skipping permissions', () => {
    const args = agentArguments({ ...base, options: { allowedTools: ['Read', 'Bash(git log:*)', 'Bash(git diff:*)'] } });
    expect(args).not.toContain('--dangerously-skip-permissions');
    expect(args[args.indexOf('--permission-mode') + 1]).toBe('dontAsk');
    expect(args[args.indexOf('--tools') + 1]).toBe('Read,Bash');
    expect(args.slice(args.indexOf('--allowedTools') + 1, args.indexOf('--allowedTools') + 4)).toEqual([
      'Read',
      'Bash(git log:*)',
      'Bash(git diff:*)',
    ]);
    // None at all: no tool is offered.
    const none = agentArguments({ ...base, options: { allowedTools: [] } });
    expect(none[none.indexOf('--tools') + 1]).toBe('');
    expect(none).not.toContain('--allowedTools');
    // An MCP tool is no built-in: allowed by its rule, never named to --tools.
    const mcp = agentArguments({ ...base, options: { allowedTools: ['Read', 'mcp__files__read'] } });
    expect(mcp[mcp.indexOf('--tools') + 1]).toBe('Read');
  });

  it('with a tool list, loads no Claude Code settings or MCP servers from the workspace or home, which could widen it', () => {
    for (const options of [{ allowedTools: ['Read'] }, { disallowedTools: ['Bash'] }]) {
      const args = agentArguments({ ...base, options });
      expect(args.slice(args.indexOf('--setting-sources'), args.indexOf('--setting-sources') + 2)).toEqual(['--setting-sources', '']);
      expect(args).toContain('--strict-mcp-config');
    }
  });
});

describe('text deltas from the partial messages', () => {
  const delta = (text: string, parent: string | null = null) => ({
    type: 'stream_event',
    parent_tool_use_id: parent,
    event: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } },
  });

  it("takes the main agent's text, and neither a subagent's nor thinking nor a tool's input", () => {
    expect(textDelta(delta('Hello'))).toBe('Hello');
    expect(textDelta(delta('from a subagent', 'toolu_1'))).toBeUndefined();
    expect(
      textDelta({ type: 'stream_event', event: { type: 'content_block_delta', delta: { type: 'thinking_delta', thinking: 'hm' } } }),
    ).toBeUndefined();
    expect(
      textDelta({ type: 'stream_event', event: { type: 'content_block_delta', delta: { type: 'input_json_delta', partial_json: '{' } } }),
    ).toBeUndefined();
    expect(textDelta({ type: 'assistant', message: { content: [{ type: 'text', text: 'whole' }] } })).toBeUndefined();
  });
});

describe('the progress reporter with text deltas', () => {
  let posts: AgentEvent[][];
  let reporter: ProgressReporter;
  beforeEach(() => {
    vi.useFakeTimers();
    posts = [];
    reporter = new ProgressReporter(async (events) => {
      posts.push(events);
    });
  });
  afterEach(() => vi.useRealTimers());

  it("sends a block's first deltas soon, the later ones at most every half second, and the step after all of them", async () => {
    reporter.pushDelta('Hel');
    reporter.pushDelta('lo');
    await vi.advanceTimersByTimeAsync(24);
    expect(posts).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(posts).toEqual([[{ type: 'text_delta', text: 'Hello' }]]);
    for (let i = 0; i < 10; i++) {
      reporter.pushDelta(` w${i}`);
      await vi.advanceTimersByTimeAsync(45);
    }
    // 450 ms of deltas after the first post: not yet sent.
    expect(posts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(50);
    expect(posts[1]).toEqual([{ type: 'text_delta', text: ' w0 w1 w2 w3 w4 w5 w6 w7 w8 w9' }]);
    // The block's text holds it whole: a delta not yet sent goes with it, unsent.
    reporter.pushDelta(' end');
    reporter.push([{ type: 'text', text: 'Hello w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 end' }]);
    await reporter.flush();
    expect(posts.slice(2).flat()).toEqual([{ type: 'text', text: 'Hello w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 end' }]);
    // A tool step sends what came before it.
    reporter.pushDelta('Let me look.');
    reporter.push([{ type: 'tool_use', name: 'Bash', summary: 'ls' }]);
    await reporter.flush();
    expect(posts.slice(3).flat()).toEqual([
      { type: 'text_delta', text: 'Let me look.' },
      { type: 'tool_use', name: 'Bash', summary: 'ls' },
    ]);
    // A step starts a new block: its first delta is quick again.
    reporter.pushDelta('next');
    await vi.advanceTimersByTimeAsync(25);
    expect(posts.at(-1)).toEqual([{ type: 'text_delta', text: 'next' }]);
  });

  it('cuts a delta longer than the API takes into pieces it takes, never half a character', async () => {
    const long = `${'a'.repeat(RUNNER_LIMITS.eventTextChars - 1)}😀${'b'.repeat(10)}`;
    reporter.pushDelta(long);
    await reporter.flush();
    const pieces = posts.flat().map((e) => (e as { text: string }).text);
    expect(pieces.join('')).toBe(long);
    expect(pieces.every((p) => p.length <= RUNNER_LIMITS.eventTextChars)).toBe(true);
    expect(pieces[0]).toBe('a'.repeat(RUNNER_LIMITS.eventTextChars - 1));
  });
});
