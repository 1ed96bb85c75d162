import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.js';
import { linkPath, prompt } from '../support/service.js';
import { readEvents } from '../support/sse.js';
import { line, ms } from './report.js';
import { summarize } from './stats.js';

/**
 * Streaming text (issue target: under 150 ms locally from the model's first token to the first
 * `text_delta` at an SSE client). The fake model stamps when it writes an answer's first text
 * delta; the client stamps when the first `text_delta` event reaches it. Both clocks are this
 * machine's. In between: the model proxy, the CLI's partial messages, the runner's batching
 * (25 ms for a block's first delta), its post through the bridge, the store, and the SSE route.
 */

const TARGET_MS = 150;
const USER = 'bench-streaming';
const WORDS = 20;

export async function streamingLatency(fake: FakeAnthropic, runs: number): Promise<boolean> {
  console.log(`\nstreaming text: model's first token to the first text_delta at an SSE client, ${runs} turns`);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-bench-streaming-'));
  let service: ServiceProcess | undefined;
  let correct = true;
  try {
    service = await startServiceProcess({ CLAUDERUN_DATA_DIR: dataDir, ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url });
    const latencies: number[] = [];
    const expected = Array.from({ length: WORDS }, (_, i) => `word${i + 1}`).join(' ');
    for (let i = 0; i < runs + 1; i++) {
      const started = await prompt(service, USER, { message: `words: ${WORDS}` }, { prefer: 'respond-async' });
      if (started.status !== 202) throw new Error(`the turn did not start (HTTP ${started.status}): ${JSON.stringify(started.body)}`);
      const links = started.body.links as { events: string };
      const startsBefore = fake.textStarts.length;
      let firstDeltaAt: number | undefined;
      const { events } = await readEvents(`${service.url}${linkPath(links.events)}`, { 'x-user-id': USER }, (event) => {
        if (event.event === 'text_delta') firstDeltaAt ??= Date.now();
        return false;
      });
      const deltas = events.filter((e) => e.event === 'text_delta').map((e) => (e.data.data as { text: string }).text);
      const modelFirst = fake.textStarts[startsBefore];
      const ok = firstDeltaAt !== undefined && modelFirst !== undefined && deltas.length > 0 && expected.startsWith(deltas.join(''));
      correct &&= ok;
      // The first turn warms the service's code paths and the page cache.
      if (ok && i > 0) latencies.push(firstDeltaAt! - modelFirst!);
    }
    if (latencies.length === 0) {
      line('latency', 'no turn streamed its answer');
      return false;
    }
    const s = summarize(latencies);
    line('first text_delta', `p50${ms(s.median)}  p90${ms(s.p90)}  min${ms(s.min)}  (target under ${TARGET_MS} ms)`);
    return correct;
  } finally {
    await service?.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
