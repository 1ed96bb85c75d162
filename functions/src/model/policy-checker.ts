import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { PolicyAnswer, PolicyQuestion } from './policy-worker.js';
import { checkModelRequest, type ModelPolicy, type PolicyVerdict, type ProxiedCall } from './proxy-policy.js';

/** The worker's module: beside this one when built; run from the sources (tests), the build's. */
function workerFile(): URL {
  const beside = new URL('./policy-worker.js', import.meta.url);
  return existsSync(fileURLToPath(beside)) ? beside : new URL('../../../dist/functions/src/model/policy-worker.js', import.meta.url);
}

/** Bodies up to this size are checked at once: handing them over would cost more than it saves. */
const INLINE_BYTES = 256 * 1024;

/**
 * Checks model requests against the policy. A large body takes about 40 ms a megabyte to parse
 * and check, and a sandbox may send 31 MiB: that work goes to a worker thread, so that the API's
 * own thread (every user's requests) never waits for it.
 */
export class PolicyChecker {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (verdict: PolicyVerdict) => void; reject: (error: Error) => void }>();
  private nextId = 0;

  constructor(private readonly policy: ModelPolicy) {}

  check(call: ProxiedCall, bytes: Buffer): Promise<PolicyVerdict> {
    if (bytes.length <= INLINE_BYTES) return Promise.resolve(checkModelRequest(call, bytes, this.policy));
    const id = this.nextId++;
    const question: PolicyQuestion = { id, call, bytes: new Uint8Array(bytes), policy: this.policy };
    return new Promise<PolicyVerdict>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const worker = this.started();
      // The copy is the worker's to keep: handed over, not copied again.
      worker.postMessage(question, [question.bytes.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
  }

  private started(): Worker {
    if (this.worker !== undefined) return this.worker;
    const worker = new Worker(workerFile());
    worker.unref();
    worker.on('message', ({ id, verdict }: PolicyAnswer) => {
      this.pending.get(id)?.resolve(verdict);
      this.pending.delete(id);
    });
    // A worker that dies fails what it held; the next large body starts another.
    const fail = (error: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const { reject } of this.pending.values()) reject(error);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the policy worker exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }
}
