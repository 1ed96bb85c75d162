import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { ConversationList } from '../../functions/src/contract/api.js';
import { newTurn } from '../../functions/src/domain/turn.js';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';
import type { FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { call, linkPath, type ApiAnswer } from '../support/service.js';
import { line, ms } from './report.js';
import { openFileLimit, startServiceProcess, type ServiceProcess } from '../support/service-process.js';
import { summarize, type Summary } from './stats.js';

/**
 * What many watchers and many stored conversations cost the service: the memory held by open
 * event streams, and how fast the conversation list pages when a user has thousands.
 */

const RSS_TARGET_MB = 150;
const LIST_P99_TARGET_MS = 20;

/** Memory is reported in decimal units (1 MB = 10^6 bytes), the stricter reading of the target. */
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const thousands = (n: number) => n.toLocaleString('en-US');

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// 1. memory with many open event streams

const WATCHER = 'bench-watch';
/** The CLI refuses a plain `sleep N` as a tool command; a node timer keeps the turn running just as well. */
const LONG_TOOL = 'bash: node -e "setTimeout(() => {}, 240000)"';
/** Streams being opened at once: above the listen backlog (511) connects would be dropped and retried. */
const OPEN_CONCURRENCY = 50;
const OPEN_TIMEOUT_MS = 30_000;
const RUNNING_TIMEOUT_MS = 120_000;
const CLOSE_TIMEOUT_MS = 60_000;
/** Time for the service's heap and socket buffers to settle before its RSS is read. */
const SETTLE_MS = 1_000;
/** Files each process holds besides the streams' sockets (its binary, libraries, database, logs). */
const FD_HEADROOM = 200;

const Accepted = z.object({ links: z.object({ turn: z.string(), events: z.string(), cancel: z.string() }) });
const TurnStatusOnly = z.object({ status: z.string() });

/**
 * One Server-Sent Events connection over node:http: a socket and a parser of event names, far
 * cheaper on the client than fetch, so that a thousand of them do not crowd the machine.
 */
class EventStream {
  status = 0;
  contentType: string | undefined;
  /** The `event:` names in arrival order (comment lines and the `retry:` block are not events). */
  readonly events: string[] = [];
  /** The response ended cleanly: the server finished it, rather than the socket breaking. */
  endedByServer = false;
  closed = false;
  failure: string | undefined;
  /** Settles true once the first event (a `status` replay) arrived; false if the stream failed first. */
  readonly opened: Promise<boolean>;
  readonly done: Promise<void>;
  private readonly request: http.ClientRequest;
  private markOpened: (ok: boolean) => void = () => {};

  constructor(url: string, userId: string, agent: http.Agent) {
    this.opened = new Promise((resolve) => (this.markOpened = resolve));
    let markDone = () => {};
    this.done = new Promise((resolve) => (markDone = resolve));
    this.request = http.get(url, { agent, headers: { 'x-user-id': userId, accept: 'text/event-stream' } }, (res) => {
      this.status = res.statusCode ?? 0;
      this.contentType = res.headers['content-type'];
      if (this.status !== 200 || !this.contentType?.startsWith('text/event-stream')) {
        this.fail(`HTTP ${this.status} (${this.contentType ?? 'no content-type'})`);
      }
      res.setEncoding('utf8');
      let buffer = '';
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let boundary: number;
        while ((boundary = buffer.indexOf('\n\n')) >= 0) {
          const fields = buffer.slice(0, boundary).split('\n');
          buffer = buffer.slice(boundary + 2);
          if (!fields.some((f) => f.startsWith('data:'))) continue;
          const type =
            fields
              .find((f) => f.startsWith('event:'))
              ?.slice('event:'.length)
              .trim() ?? 'message';
          this.events.push(type);
          if (this.events.length === 1) {
            if (type === 'status') this.markOpened(true);
            else this.fail(`first event was "${type}", not the "status" replay`);
          }
        }
      });
      res.on('end', () => (this.endedByServer = true));
    });
    this.request.on('error', (error) => this.fail(error.message));
    this.request.on('close', () => {
      this.closed = true;
      if (this.events.length === 0) this.fail('closed before its first event');
      markDone();
    });
  }

  get isOpen(): boolean {
    return this.events[0] === 'status' && !this.closed;
  }

  /** It got the final `result` as its last event, and then the server ended the response. */
  get closedByResult(): boolean {
    return this.events.at(-1) === 'result' && this.endedByServer;
  }

  fail(why: string): void {
    this.failure ??= why;
    this.markOpened(false);
  }

  destroy(): void {
    this.request.destroy();
  }
}

/** Opens `count` streams, at most OPEN_CONCURRENCY connecting at a time; every stream is returned, failed or not. */
async function openStreams(count: number, open: () => EventStream): Promise<EventStream[]> {
  const streams: EventStream[] = [];
  const worker = async () => {
    while (streams.length < count) {
      const stream = open();
      streams.push(stream);
      if ((await withTimeout(stream.opened, OPEN_TIMEOUT_MS)) === 'timeout') stream.fail(`no first event within ${OPEN_TIMEOUT_MS / 1000} s`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, count) }, worker));
  return streams;
}

/** The few distinct reasons streams failed, with how many failed each way. */
function failureSummary(reasons: Array<string | undefined>): string[] {
  const counts = new Map<string, number>();
  for (const reason of reasons) if (reason !== undefined) counts.set(reason, (counts.get(reason) ?? 0) + 1);
  return [...counts].slice(0, 5).map(([reason, n]) => `${n} x ${reason}`.slice(0, 300));
}

async function waitUntilRunning(service: ServiceProcess, turnLink: string): Promise<string> {
  const deadline = Date.now() + RUNNING_TIMEOUT_MS;
  let status = 'unknown';
  while (Date.now() < deadline) {
    const answer = await call(service, 'GET', turnLink, { userId: WATCHER });
    status = TurnStatusOnly.parse(answer.body).status;
    if (status !== 'queued' && status !== 'starting') return status;
    await sleep(200);
  }
  return `${status} after ${RUNNING_TIMEOUT_MS / 1000} s`;
}

/**
 * Holds `count` event streams open on one running turn and reads what they cost the service in
 * memory; then cancels the turn and checks that every stream got the result and was closed.
 * Returns false on a correctness failure (a stream that did not open, or never got its result).
 */
export async function eventStreamsMemory(fake: FakeAnthropic, count: number): Promise<boolean> {
  console.log(`\nmemory with ${thousands(count)} open event streams`);
  // Each stream is one socket in this process and one in the service.
  const needed = count + FD_HEADROOM;
  const ownLimit = await openFileLimit('self');
  if (ownLimit < needed) {
    line('FAILED', `this process may open ${ownLimit} files and needs ${needed}: raise ulimit -n`);
    return false;
  }

  const dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-bench-streams-'));
  // No keep-alive: each stream has its own connection, as separate watchers would, and no idle
  // socket lingers once the server ends a stream.
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  let service: ServiceProcess | undefined;
  let streams: EventStream[] = [];
  try {
    service = await startServiceProcess({
      CLAUDERUN_DATA_DIR: dataDir,
      ANTHROPIC_API_KEY: fake.apiKey,
      ANTHROPIC_BASE_URL: fake.url,
      // Long enough that the turn cannot time out while the streams are being opened and measured.
      CLAUDERUN_TURN_TIMEOUT_SECONDS: '300',
      // One watcher user holds every stream here: the per-user cap would refuse all but 20.
      CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER: String(count),
    });
    const serviceLimit = await openFileLimit(service.pid);
    line('open-file limit', `${ownLimit} here, ${serviceLimit} in the service (${needed} needed on each side)`);
    if (serviceLimit < needed) {
      line('FAILED', 'the service cannot hold that many sockets: raise ulimit -n');
      return false;
    }

    const started = await call(service, 'POST', '/api/conversation', {
      userId: WATCHER,
      body: { message: LONG_TOOL },
      headers: { prefer: 'respond-async' },
    });
    const accepted = Accepted.safeParse(started.body);
    if (started.status !== 202 || !accepted.success) {
      line('FAILED', `the long turn was not accepted: HTTP ${started.status} ${JSON.stringify(started.body).slice(0, 300)}`);
      return false;
    }
    const { turn, events, cancel } = accepted.data.links;
    const links = { turn: linkPath(turn), events: linkPath(events), cancel: linkPath(cancel) };
    const status = await waitUntilRunning(service, links.turn);
    if (status !== 'running') {
      line('FAILED', `the long turn is ${status}, not running`);
      return false;
    }

    await sleep(SETTLE_MS);
    const before = await service.rss();
    const openedAt = performance.now();
    const eventsUrl = `${service.url}${links.events}`;
    streams = await openStreams(count, () => new EventStream(eventsUrl, WATCHER, agent));
    const openingMs = performance.now() - openedAt;
    await sleep(SETTLE_MS);
    const withStreams = await service.rss();
    // Counted after the settling pause: a stream the server dropped meanwhile is not open.
    const open = streams.filter((s) => s.isOpen).length;

    line('streams open', `${open}/${count} (HTTP 200, text/event-stream, "status" replay received) in ${ms(openingMs).trim()}`);
    line('RSS before', mb(before));
    line('RSS with streams', mb(withStreams));
    line('per stream', `${((withStreams - before) / count / 1000).toFixed(1)} KB`);
    const met = withStreams < RSS_TARGET_MB * 1e6;
    line('target', `RSS under ${RSS_TARGET_MB} MB with ${thousands(count)} streams open: ${met ? 'MET' : 'NOT MET'}`);

    const cancelled = await call(service, 'POST', links.cancel, { userId: WATCHER });
    const ended = await withTimeout(Promise.all(streams.map((s) => s.done)), CLOSE_TIMEOUT_MS);
    const closedByResult = streams.filter((s) => s.closedByResult).length;
    const turnState =
      cancelled.status === 200 ? `turn ${TurnStatusOnly.safeParse(cancelled.body).data?.status ?? '?'}` : `cancel answered HTTP ${cancelled.status}`;
    line('after cancel', `streams closed by the result: ${closedByResult}/${count} (${turnState})`);
    if (ended === 'timeout')
      line('FAILED', `streams still open ${CLOSE_TIMEOUT_MS / 1000} s after the cancel: ${streams.filter((s) => !s.closed).length}`);

    const reasons = streams.map((s) => {
      if (s.failure !== undefined || s.closedByResult) return s.failure;
      return `${s.closed ? 'closed' : 'still open'} after events [${s.events.join(', ')}] without the result ending it`;
    });
    for (const reason of failureSummary(reasons)) line('FAILED stream', reason);
    return open === count && closedByResult === count;
  } finally {
    for (const stream of streams) stream.destroy();
    agent.destroy();
    // SIGTERM also stops the turn's sandbox if the cancel was never reached.
    await service?.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// 2. list latency with many stored conversations

const LISTER = 'bench-lister';
const OTHER_USERS = 100;
const PAGE_SIZE = 20;
const FIRST_PAGE_REQUESTS = 500;
const DEEP_PAGES = 50;
/** Walks down DEEP_PAGES pages, so that the deep-page figures rest on hundreds of samples as the first page's do. */
const WALKS = 10;
/** Requests before timing starts: JIT compilation and SQLite's first page reads are one-off costs. */
const WARM_UP_REQUESTS = 20;
/**
 * Where the database is built before it is copied into the data dir. Every store call is its own
 * commit, and on disk each commit waits for an fsync: the 60,000 of a fill took from 20 s to over
 * a minute here, depending on other load; in RAM (tmpfs) they take a few seconds. The service then
 * reads an ordinary file on disk all the same.
 */
const SCRATCH_ROOT = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();

/**
 * Stores `perUser` conversations of LISTER's and as many of other users', each with one finished
 * turn, straight through the store the service uses; returns LISTER's ids newest first.
 */
async function fillStore(file: string, perUser: number): Promise<string[]> {
  const store = new SqliteConversationStore(file);
  try {
    const base = Date.parse('2025-01-01T00:00:00.000Z');
    const listerIds: string[] = [];
    for (let i = 0; i < 2 * perUser; i++) {
      // Alternating owners interleaves LISTER's rows with others' in time and on disk, as on a
      // shared service, instead of one block the index could skip to trivially.
      const userId = i % 2 === 0 ? LISTER : `bench-other-${(i >> 1) % OTHER_USERS}`;
      // One second apart: distinct updatedAt values give one right order to check pages against.
      const at = new Date(base + i * 1000).toISOString();
      const conversationId = randomUUID();
      await store.createConversation({
        id: conversationId,
        userId,
        title: `bench conversation ${i}`,
        createdAt: at,
        updatedAt: at,
        sessionId: null,
        stateKey: null,
        options: {},
      });
      const turnId = randomUUID();
      const started = await store.startTurn(
        newTurn({
          id: turnId,
          conversationId,
          userId,
          prompt: `bench conversation ${i}`,
          createdAt: at,
          deadlineAt: new Date(base + i * 1000 + 600_000).toISOString(),
        }),
      );
      if (!started.started) throw new Error(`fill: turn ${i} was not started: ${JSON.stringify(started)}`);
      const done = await store.updateTurn(turnId, ['queued'], {
        status: 'succeeded',
        text: `echo: bench conversation ${i}`,
        startedAt: at,
        finishedAt: at,
      });
      if (done === undefined) throw new Error(`fill: turn ${i} could not be finished`);
      if (userId === LISTER) listerIds.push(conversationId);
    }
    return listerIds.reverse();
  } finally {
    await store.close();
  }
}

interface Page {
  ms: number;
  answer: ApiAnswer;
}

/** What is wrong with a list page, given the ids it should hold in order; undefined when right. */
function pageProblem(page: Page, expected: readonly string[], listerIds: ReadonlySet<string>, seen: Set<string>): string | undefined {
  if (page.answer.status !== 200) return `HTTP ${page.answer.status} ${JSON.stringify(page.answer.body).slice(0, 200)}`;
  const parsed = ConversationList.safeParse(page.answer.body);
  if (!parsed.success) return `not a conversation list: ${parsed.error.message.slice(0, 200)}`;
  const { conversations, nextCursor } = parsed.data;
  if (conversations.length !== PAGE_SIZE) return `${conversations.length} items, not ${PAGE_SIZE}`;
  for (let i = 0; i < conversations.length; i++) {
    const { conversationId, updatedAt } = conversations[i]!;
    if (!listerIds.has(conversationId)) return `item ${i} (${conversationId}) is not ${LISTER}'s`;
    if (seen.has(conversationId)) return `item ${i} (${conversationId}) was on an earlier page`;
    seen.add(conversationId);
    const previous = conversations[i - 1];
    if (previous !== undefined && !(updatedAt < previous.updatedAt)) return `item ${i} is not older than item ${i - 1}`;
  }
  // The order above only holds within the page; the ids must also be the right ones (none skipped).
  if (conversations.some((c, i) => c.conversationId !== expected[i])) return 'not the next conversations, newest first';
  if (nextCursor === null) return 'no nextCursor although more conversations follow';
  return undefined;
}

/**
 * Fills a store with `perUser` conversations for LISTER and as many for others, starts the service
 * on it, and times the list's first page and the pages behind a cursor. Returns false when a page
 * is wrong.
 */
export async function listLatency(fake: FakeAnthropic, perUser: number): Promise<boolean> {
  console.log(`\nlist latency with ${thousands(perUser)} stored conversations`);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-bench-list-'));
  const scratch = await mkdtemp(path.join(SCRATCH_ROOT, 'clauderun-bench-fill-'));
  let service: ServiceProcess | undefined;
  try {
    const fillStarted = performance.now();
    const newestFirst = await fillStore(path.join(scratch, 'clauderun.db'), perUser);
    // Closing the store checkpointed its write-ahead log into the file, so the file is all of it.
    if (existsSync(path.join(scratch, 'clauderun.db-wal'))) throw new Error('fill: the database still has a write-ahead log after closing');
    await copyFile(path.join(scratch, 'clauderun.db'), path.join(dataDir, 'clauderun.db'));
    const fillMs = performance.now() - fillStarted;
    line(
      'fill',
      `${thousands(2 * perUser)} conversations (${thousands(perUser)} of ${LISTER}'s), 1 finished turn each, in ${(fillMs / 1000).toFixed(1)} s`,
    );
    line('', `(built in ${SCRATCH_ROOT}, then copied into the service's data dir)`);

    // A process of its own, so that the client's work here is not timed as the service's.
    service = await startServiceProcess({ CLAUDERUN_DATA_DIR: dataDir, ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url });
    const running = service;
    const listerIds = new Set(newestFirst);
    const getPage = async (cursor?: string): Promise<Page> => {
      const query = `limit=${PAGE_SIZE}${cursor === undefined ? '' : `&cursor=${encodeURIComponent(cursor)}`}`;
      const started = performance.now();
      const answer = await call(running, 'GET', `/api/conversations?${query}`, { userId: LISTER });
      return { ms: performance.now() - started, answer };
    };

    let wrong = 0;
    const problems: string[] = [];
    const record = (where: string, problem: string | undefined): boolean => {
      if (problem === undefined) return true;
      wrong++;
      if (problems.length < 5) problems.push(`${where}: ${problem}`);
      return false;
    };

    for (let i = 0; i < WARM_UP_REQUESTS; i++) await getPage();

    const firstPage = newestFirst.slice(0, PAGE_SIZE);
    const firstMs: number[] = [];
    for (let i = 0; i < FIRST_PAGE_REQUESTS; i++) {
      const page = await getPage();
      firstMs.push(page.ms);
      record(`first page, request ${i + 1}`, pageProblem(page, firstPage, listerIds, new Set()));
    }

    // Every walk must reach page DEEP_PAGES with a cursor still to follow.
    const pages = Math.min(DEEP_PAGES, Math.floor((perUser - 1) / PAGE_SIZE));
    const deepMs: number[] = [];
    for (let walk = 0; walk < WALKS; walk++) {
      const seen = new Set<string>();
      let cursor: string | undefined;
      for (let p = 0; p < pages; p++) {
        const page = await getPage(cursor);
        // Page 1 of a walk is a first page, measured above; the deep figures are the cursor pages.
        if (p > 0) deepMs.push(page.ms);
        const expected = newestFirst.slice(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
        if (!record(`walk ${walk + 1}, page ${p + 1}`, pageProblem(page, expected, listerIds, seen))) break;
        cursor = ConversationList.parse(page.answer.body).nextCursor ?? undefined;
      }
    }

    const first = summarize(firstMs);
    const row = (label: string, s: Summary) => line(label, `${ms(s.median)}${ms(s.p99)}${ms(s.max)}`);
    line('', `${'median'.padStart(9)}${'p99'.padStart(9)}${'max'.padStart(9)}`);
    row('first page', first);
    let worstP99 = first.p99;
    if (deepMs.length > 0) {
      const deep = summarize(deepMs);
      row(`pages 2-${pages}`, deep);
      worstP99 = Math.max(worstP99, deep.p99);
    }
    line(
      'requests',
      `${FIRST_PAGE_REQUESTS} first pages, ${WALKS} walks of ${pages} pages by cursor (${deepMs.length} cursor pages), ${PAGE_SIZE} a page`,
    );
    line('answers', wrong === 0 ? `all right: ${PAGE_SIZE} items a page, newest first, no repeats, only ${LISTER}'s` : `${wrong} wrong`);
    for (const problem of problems) line('FAILED page', problem);
    line('target', `p99 under ${LIST_P99_TARGET_MS} ms: ${worstP99 < LIST_P99_TARGET_MS ? 'MET' : 'NOT MET'}`);
    return wrong === 0;
  } finally {
    await service?.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  }
}
