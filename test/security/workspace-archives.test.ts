import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import { buffer } from 'node:stream/consumers';
import { createGzip, gunzipSync, gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../../functions/src/blobs/fs.js';
import { StateArchiveError } from '../../functions/src/workspace/state-archive.js';
import { StateBlobs } from '../../functions/src/workspace/state-blobs.js';
import { changedState } from '../../functions/src/workspace/workspace-change.js';
import { padded, paxEntry, TAR_END, tarEntry, tarHeader, withPrefix } from '../support/tar-bytes.js';

/*
 * A state archive comes from a sandbox, whose agent may be hostile (it can reach the runner's
 * token): the API reads every one on the host, so each is held to the sandbox's own limits and
 * none can make the API hold more than a little of it in memory.
 */

const MiB = 1024 * 1024;
/** A whole gzipped archive of these entries. */
const gz = (...entries: Buffer[]) => gzipSync(Buffer.concat([...entries, TAR_END]));
const LIMITS = { maxStateBytes: 8 * MiB, archive: { maxExpandedBytes: 300 * MiB, maxEntries: 100 } };

describe('state archives from a hostile sandbox, read on the host', () => {
  let root: string;
  let states: StateBlobs;
  const stored = () => readdirSync(path.join(root, 'c'), { recursive: true }).map(String);
  const put = (archive: Buffer) => states.put('c/state.tar.gz', Readable.from([archive]));

  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'clauderun-states-'));
    states = new StateBlobs(new FsBlobStore(root), LIMITS);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('lists files, directories, symlinks, hard links and devices as what they are, and only the workspace', async () => {
    const manifest = await put(
      gzipSync(
        Buffer.concat([
          tarEntry('home/agent/.claude/projects/p/session.jsonl', Buffer.from('{}')),
          tarEntry('workspace/', undefined, '5'),
          tarEntry('workspace/a.txt', Buffer.from('hello')),
          tarEntry('workspace/link', undefined, '2', '/etc/shadow'),
          tarEntry('workspace/hard', undefined, '1', 'workspace/a.txt'),
          tarEntry('workspace/null', undefined, '3'),
          tarEntry('workspace/fifo', undefined, '6'),
          TAR_END,
        ]),
      ),
    );
    expect(manifest.entries.map(({ path, type, size, target }) => ({ path, type, size, target }))).toEqual([
      { path: 'a.txt', type: 'file', size: 5, target: undefined },
      { path: 'link', type: 'symlink', size: 0, target: '/etc/shadow' },
      { path: 'hard', type: 'hardlink', size: 0, target: 'a.txt' },
      { path: 'null', type: 'other', size: 0, target: undefined },
      { path: 'fifo', type: 'other', size: 0, target: undefined },
    ]);
    expect(await states.manifest('c/state.tar.gz')).toEqual(manifest);
  });

  it('reads the manifest of a state stored before manifests were from the state, once, and keeps it', async () => {
    await new FsBlobStore(root).put(
      'c/old.tar.gz',
      Readable.from([gzipSync(Buffer.concat([tarEntry('workspace/kept.txt', Buffer.from('x')), TAR_END]))]),
      MiB,
    );
    expect(stored()).toEqual(['old.tar.gz']);
    expect((await states.manifest('c/old.tar.gz')).entries.map((entry) => entry.path)).toEqual(['kept.txt']);
    expect(stored().sort()).toEqual(['old.tar.gz', 'old.tar.gz.manifest.json']);
    await states.delete('c/old.tar.gz');
    expect(stored()).toEqual([]);
  });

  it('refuses, storing nothing, a state that expands past the disk, holds too many files, names a path outside its root, or is not a gzipped tar', async () => {
    const cases: Array<[string, Buffer, RegExp]> = [
      [
        'a gzip bomb',
        gzipSync(Buffer.concat([tarHeader('workspace/zeros', 400 * MiB), Buffer.alloc(400 * MiB)])),
        /expands to more than 314572800 bytes/,
      ],
      ['101 files', gzipSync(Buffer.concat([...Array.from({ length: 101 }, (_, i) => tarEntry(`workspace/f${i}`)), TAR_END])), /more than 100 files/],
      ['an absolute name', gzipSync(Buffer.concat([tarEntry('/etc/cron.d/x', Buffer.from('x')), TAR_END])), /not absolute/],
      ['a name climbing out', gzipSync(Buffer.concat([tarEntry('workspace/../../etc/x', Buffer.from('x')), TAR_END])), /'\.\.' segment/],
      ['no gzip', Buffer.concat([tarEntry('workspace/a', Buffer.from('x')), TAR_END]), /not a gzipped tar/],
      [
        'a cut gzip',
        gzipSync(Buffer.concat([tarEntry('workspace/a', Buffer.alloc(100_000, 1)), TAR_END])).subarray(0, 200),
        /not a gzipped tar|not a readable tar/,
      ],
      ['no tar', gzipSync(Buffer.alloc(4096, 7)), /not a readable tar/],
      // What the runner's GNU tar never writes, and node-tar and GNU tar would read differently.
      [
        'a file outside the two trees',
        gz(tarEntry('home/agent/.claude/settings.json', Buffer.from('{"hooks":{}}'))),
        /outside the workspace and the agent's sessions/,
      ],
      ['a name with a . segment', gz(tarEntry('workspace/./hidden.sh', Buffer.from('x'))), /'\.' segment/],
      ['a name twice', gz(tarEntry('workspace/a', Buffer.from('1')), tarEntry('workspace/a', Buffer.from('2'))), /holds "workspace\/a" twice/],
      [
        'a file beneath a symlink',
        gz(tarEntry('workspace/ssh', undefined, '2', '/tmp'), tarEntry('workspace/ssh/key', Buffer.from('x'))),
        /beneath "workspace\/ssh", a symlink/,
      ],
      [
        'a hard link to nothing before it',
        gz(tarEntry('workspace/h', undefined, '1', 'workspace/later')),
        /hard link "workspace\/h" to "workspace\/later", no file before it/,
      ],
      ['a name that is not UTF-8', gz(tarEntry('workspace/bad\xff.txt', Buffer.from('x'))), /not UTF-8/],
      [
        'a pax header of 100 KB',
        gz(tarEntry('PaxHeader/x', Buffer.alloc(100 * 1024, 'a'), 'x'), tarEntry('workspace/a', Buffer.from('x'))),
        /a header of 102400 bytes/,
      ],
      ['a type tar does not know', gz(tarEntry('workspace/odd', Buffer.from('x'), 'Z')), /a type tar does not know/],
      [
        'a link target of 12,000 bytes',
        gz(paxEntry('linkpath', 'a'.repeat(12_000)), tarEntry('workspace/l', undefined, '2', 'a')),
        /target is longer than 4095 bytes/,
      ],
    ];
    for (const [what, archive, reason] of cases) {
      const refused = await put(archive).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused, what).toBeInstanceOf(StateArchiveError);
      expect((refused as Error).message, what).toMatch(reason);
      expect(
        stored().filter((name) => name.startsWith('state')),
        what,
      ).toEqual([]);
    }
  });

  it("refuses a state whose names take more than 16 MiB (what a listing would hold), and leaves a backslash's name out of a zip only", async () => {
    const roomy = new StateBlobs(new FsBlobStore(root), { maxStateBytes: 64 * MiB, archive: { maxExpandedBytes: 300 * MiB, maxEntries: 50_000 } });
    // Names of 4,000 bytes are fine one by one: in a directory tree of 200-byte names.
    const deep = (i: number) => `workspace/${Array.from({ length: 19 }, () => 'd'.repeat(200)).join('/')}/${String(i).padStart(200, 'n')}`;
    const longNames = Array.from({ length: 4300 }, (_, i) => [paxEntry('path', deep(i)), tarEntry('workspace/short')]).flat();
    await expect(roomy.put('c/names.tar.gz', Readable.from([gz(...longNames)]))).rejects.toThrow(/names take more than 16777216 bytes/);
    expect(stored()).toEqual([]);

    await roomy.put(
      'c/slash.tar.gz',
      Readable.from([gz(tarEntry('workspace/a\\..\\..\\b', Buffer.from('x')), tarEntry('workspace/ok', Buffer.from('y')))]),
    );
    const names = async (format: 'zip' | 'tar.gz') => (await buffer((await roomy.export('c/slash.tar.gz', format)).stream)).toString('latin1');
    expect(await names('zip')).not.toContain('a\\');
    expect(await names('zip')).toContain('workspace/ok');
    expect(gunzipSync(Buffer.from(await names('tar.gz'), 'latin1')).toString('latin1')).toContain('workspace/a\\..\\..\\b');
  });

  it('stores a state as node-tar read it, written anew: GNU tar, unpacking it in the next sandbox, reads the same names (headers one of them ignores are gone)', async () => {
    const settings = 'home/agent/.claude/settings.json';
    const hook = Buffer.from('{"hooks":{}}');
    const variants: Array<[string, Buffer]> = [
      ['a type GNU tar unpacks as a file and node-tar drops', gz(tarEntry(settings, hook, 'N'), tarEntry('workspace/readme.txt', Buffer.from('x')))],
      ['a global pax path', gz(paxEntry('path', settings, 'g'), tarEntry('workspace/readme.txt', hook))],
      [
        'a pax path beside a GNU long name',
        gz(paxEntry('path', settings), tarEntry('././@LongLink', Buffer.from('workspace/readme.txt\0'), 'L'), tarEntry('workspace/x', hook)),
      ],
      ['a GNU sparse name', gz(paxEntry('GNU.sparse.name', settings), tarEntry('workspace/readme.txt', hook))],
      [
        'a ustar prefix of a header whose version is not 00',
        gz(Buffer.concat([withPrefix(tarHeader('workspace/a', hook.length), 'home/agent/.claude', '\0\0'), padded(hook)])),
      ],
    ];
    for (const [what, archive] of variants) {
      const manifest = await put(archive).catch((error: unknown) => error as Error);
      // Refused is fine: then nothing is stored for any tar to read.
      if (manifest instanceof Error) {
        expect(stored(), `${what}: ${manifest.message}`).toEqual([]);
        continue;
      }
      const gnu = execFileSync('tar', ['-tzf', path.join(root, 'c', 'state.tar.gz')], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean);
      expect(gnu, what).not.toContain(settings);
      expect(
        gnu.every((name) => name.startsWith('workspace/') || name.startsWith('home/agent/.claude/projects/')),
        `${what}: ${gnu.join(', ')}`,
      ).toBe(true);
      expect(
        gnu.map((name) => name.replace(/^workspace\//, '')),
        what,
      ).toEqual(manifest.entries.map((entry) => entry.path));
      await states.delete('c/state.tar.gz');
    }
  });

  it('changes and exports a state of many entries: each is copied when its turn comes, none held up', async () => {
    const roomy = new StateBlobs(new FsBlobStore(root), { maxStateBytes: 64 * MiB, archive: { maxExpandedBytes: 300 * MiB, maxEntries: 50_000 } });
    const many = Array.from({ length: 600 }, (_, i) => tarEntry(`workspace/many/f${i}`, Buffer.alloc(1000, 'x')));
    await roomy.put(
      'c/state.tar.gz',
      Readable.from([gz(tarEntry('workspace/', undefined, '5'), ...many, tarEntry('workspace/big', Buffer.alloc(3 * MiB)))]),
    );
    const previous = await roomy.open('c/state.tar.gz');
    const changed = await roomy.put(
      'c/changed.tar.gz',
      changedState(previous?.stream, { kind: 'put', path: 'new.txt', data: Buffer.from('new'), at: new Date() }, roomy.limits.archive),
    );
    expect(changed.entries.length).toBe(602);
    for (const format of ['tar.gz', 'zip'] as const) {
      expect((await buffer((await roomy.export('c/changed.tar.gz', format)).stream)).length, format).toBeGreaterThan(3000);
    }
  });

  it('exports a file dated before 1970 in a zip (its time clamped to what zip holds)', async () => {
    await put(gz(paxEntry('mtime', '-14256000'), tarEntry('workspace/old.txt', Buffer.from('old'))));
    const zip = await buffer((await states.export('c/state.tar.gz', 'zip')).stream);
    expect(zip.subarray(0, 4).toString('latin1')).toBe('PK\x03\x04');
    expect(zip.includes(Buffer.from('workspace/old.txt'))).toBe(true);
  });

  it('refuses a pax header of 200 MB without holding it in memory', async () => {
    const paxBytes = 200 * MiB;
    // Compressed a MiB at a time: the test itself never holds the header whole.
    const gzip = createGzip();
    const compressed = buffer(gzip);
    gzip.write(tarHeader('PaxHeader/a', paxBytes, 'x'));
    const mebibyte = Buffer.alloc(MiB, 'a');
    for (let i = 0; i < paxBytes / MiB; i++) if (!gzip.write(mebibyte)) await once(gzip, 'drain');
    gzip.end(Buffer.concat([tarEntry('workspace/after', Buffer.from('x')), TAR_END]));
    const archive = await compressed;
    const before = process.memoryUsage();
    let peak = 0;
    const sampler = setInterval(() => {
      // The resident size: what tar's parser would hold is a string, which heap figures can miss.
      peak = Math.max(peak, process.memoryUsage().rss - before.rss);
    }, 5);
    try {
      await expect(put(archive)).rejects.toThrow(/a header of 209715200 bytes/);
    } finally {
      clearInterval(sampler);
    }
    expect(peak).toBeLessThan(100 * MiB);
  });
});
