import { parentPort } from 'node:worker_threads';
import { checkModelRequest, type ModelPolicy, type PolicyVerdict, type ProxiedCall } from './proxy-policy.js';

/** The question a PolicyChecker puts to this worker, and the answer it gets. */
export interface PolicyQuestion {
  id: number;
  call: ProxiedCall;
  bytes: Uint8Array;
  policy: ModelPolicy;
}
export interface PolicyAnswer {
  id: number;
  verdict: PolicyVerdict;
}

// Runs as a worker thread: parsing and checking a large body here keeps the API's own thread free.
parentPort?.on('message', ({ id, call, bytes, policy }: PolicyQuestion) => {
  const answer: PolicyAnswer = { id, verdict: checkModelRequest(call, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), policy) };
  parentPort?.postMessage(answer);
});
