import { execFile } from 'node:child_process';
import http from 'node:http';
import type net from 'node:net';
import { promisify } from 'node:util';
import type { FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { prompt, startService, type RunningService } from '../support/service.js';
import { line, ms } from './report.js';
import { summarize } from './stats.js';

/**
 * What the one way out costs: the same curl downloads, run on the host straight to a loopback
 * server and in a sandbox through the whole egress path (the runner's proxy, the WebSocket tunnel,
 * the API's policy). curl times each transfer itself (`%{time_total}`), so the sandbox's start and
 * the agent's turn are not counted. On loopback both sides cost little; what a deployment adds
 * (Google's network between the sandbox and the API, and between the API and the host) only a
 * deployment can show.
 */

const HOST = 'egress-bench.test';
const BIG_BYTES = 64 * 1024 * 1024;
const SMALL_CONNECTIONS = 20;
const run = promisify(execFile);

/** Serves `/bytes/N`: N bytes from one repeated chunk, so that the server costs next to nothing. */
async function startByteServer(): Promise<{ server: http.Server; port: number }> {
  const chunk = Buffer.alloc(1024 * 1024, 'x');
  const server = http.createServer((req, res) => {
    let left = Number(/^\/bytes\/(\d+)$/.exec(req.url ?? '')?.[1] ?? 0);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(left) });
    const pump = () => {
      while (left > 0) {
        const piece = chunk.subarray(0, Math.min(left, chunk.length));
        left -= piece.length;
        if (!res.write(piece)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** One curl process per URL, so that each transfer is a connection of its own; prints `size seconds` per transfer. */
const curlCommand = (urls: string[]) =>
  `for url in ${urls.map((url) => `'${url}'`).join(' ')}; do curl -sS --fail -o /dev/null -w '%{size_download} %{time_total}\\n' "$url" || exit 1; done`;

interface Transfer {
  bytes: number;
  seconds: number;
}

function parseTransfers(output: string, expected: number): Transfer[] {
  const transfers = [...output.matchAll(/(\d+) (\d+\.\d+)$/gm)].map(([, bytes, seconds]) => ({ bytes: Number(bytes), seconds: Number(seconds) }));
  if (transfers.length !== expected) throw new Error(`expected ${expected} transfers, curl said: ${output.slice(0, 500)}`);
  return transfers;
}

/** In a sandbox, through the egress path: the tool's own output carries curl's timings. */
async function throughTunnel(service: RunningService, urls: string[]): Promise<Transfer[]> {
  const answer = await prompt(service, 'bench-egress', { message: `bash: ${curlCommand(urls)}` });
  if (answer.status !== 200 || answer.body.status !== 'succeeded')
    throw new Error(`egress turn failed (HTTP ${answer.status}): ${JSON.stringify(answer.body)}`);
  return parseTransfers(String(answer.body.text), urls.length);
}

/** On the host, straight to the server by its loopback address. */
async function direct(urls: string[]): Promise<Transfer[]> {
  const { stdout } = await run('bash', ['-c', curlCommand(urls)]);
  return parseTransfers(stdout, urls.length);
}

const mbPerSecond = (t: Transfer) => `${(t.bytes / t.seconds / 1e6).toFixed(0)} MB/s`;

export async function egressCost(fake: FakeAnthropic, runs: number): Promise<boolean> {
  console.log(
    `\negress: ${SMALL_CONNECTIONS} small downloads (one connection each) and one of ${BIG_BYTES / 1024 / 1024} MiB, direct on loopback vs through the tunnel`,
  );
  const { server, port } = await startByteServer();
  const service = await startService({
    ANTHROPIC_API_KEY: fake.apiKey,
    ANTHROPIC_BASE_URL: fake.url,
    CLAUDERUN_EGRESS_ALLOW: `${HOST}:80`,
    CLAUDERUN_EGRESS_TEST_RESOLVE: `${HOST}=127.0.0.1:${port}`,
  });
  try {
    const small = Array.from({ length: SMALL_CONNECTIONS }, () => `http://${HOST}/bytes/100`);
    const smallDirect = Array.from({ length: SMALL_CONNECTIONS }, () => `http://127.0.0.1:${port}/bytes/100`);
    const big = [`http://${HOST}/bytes/${BIG_BYTES}`];
    const bigDirect = [`http://127.0.0.1:${port}/bytes/${BIG_BYTES}`];
    // A warm-up of each, so that neither side pays a first connection's one-off costs.
    await throughTunnel(service, small.slice(0, 1));
    await direct(smallDirect.slice(0, 1));

    const tunnelSmall: number[] = [];
    const directSmall: number[] = [];
    const tunnelBig: Transfer[] = [];
    const directBig: Transfer[] = [];
    for (let i = 0; i < runs; i++) {
      tunnelSmall.push(...(await throughTunnel(service, small)).map((t) => t.seconds * 1000));
      directSmall.push(...(await direct(smallDirect)).map((t) => t.seconds * 1000));
      tunnelBig.push(...(await throughTunnel(service, big)));
      directBig.push(...(await direct(bigDirect)));
    }
    const wrongSize = [...tunnelBig, ...directBig].find((t) => t.bytes !== BIG_BYTES);
    if (wrongSize !== undefined) throw new Error(`a ${BIG_BYTES}-byte download got ${wrongSize.bytes} bytes`);

    const t = summarize(tunnelSmall);
    const d = summarize(directSmall);
    line('', `${'median'.padStart(9)}${'p90'.padStart(9)}${'min'.padStart(9)}`);
    line('small, tunnel', `${ms(t.median)}${ms(t.p90)}${ms(t.min)}   (${tunnelSmall.length} connections)`);
    line('small, direct', `${ms(d.median)}${ms(d.p90)}${ms(d.min)}`);
    line('added latency', `${(t.median - d.median).toFixed(1)} ms per connection (median)`);
    const median = (transfers: Transfer[]) => transfers.map((x) => x.seconds).sort((a, b) => a - b)[Math.floor(transfers.length / 2)] ?? 0;
    const throughput = (transfers: Transfer[]) => mbPerSecond({ bytes: BIG_BYTES, seconds: median(transfers) });
    line('big, tunnel', `${(median(tunnelBig) * 1000).toFixed(0)} ms, ${throughput(tunnelBig)} (median of ${runs})`);
    line('big, direct', `${(median(directBig) * 1000).toFixed(0)} ms, ${throughput(directBig)}`);
    return true;
  } finally {
    await service.stop({ removeData: true });
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
