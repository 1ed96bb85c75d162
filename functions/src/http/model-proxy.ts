import { Router, type Request, type Response } from 'express';
import { INTERNAL_ROUTES } from '../contract/routes.js';
import { ServiceError } from '../conversations/errors.js';
import type { RunnerService } from '../conversations/runner-service.js';
import { roughTokens } from '../model/messages-sse.js';
import { UsageMeter } from '../model/metering.js';
import { costUsd } from '../model/pricing.js';
import type { PolicyChecker } from '../model/policy-checker.js';
import { allowedBetas, PROXIED_CALLS, type ModelPolicy, type ProxiedCall } from '../model/proxy-policy.js';
import { UpstreamCredentialsError, type ModelUpstream } from '../model/upstream.js';
import type { Turn } from '../domain/turn.js';
import { bodyBytes } from './body.js';
import { KeyedMinuteAllowance, KeyedSlots } from './keyed-slots.js';
import { bearer } from './internal-routes.js';

const FORWARDED_REQUEST_HEADERS = ['anthropic-version', 'content-type', 'accept'];
const FORWARDED_RESPONSE_HEADERS = ['content-type', 'request-id', 'retry-after', 'anthropic-ratelimit-requests-remaining'];
/**
 * Under the Messages API's own request limit (32 MB) and a Cloud Run function's (32 MB:
 * cloud.google.com/functions/quotas), with room for the headers, so that a body over it gets the
 * proxy's own answer rather than the platform's.
 */
export const MAX_MODEL_REQUEST_BYTES = 31 * 1024 * 1024;
const MODEL_BASE = INTERNAL_ROUTES.modelBase;
/** The longest a model call may take; a 32k-token answer streams in a few minutes. */
const MODEL_CALL_TIMEOUT_MS = 15 * 60 * 1000;

/**
 * The agent's model endpoint. The sandbox presents its turn token as the API key; the proxy
 * checks it and the request (proxy-policy.ts), sends the call on with the real key (which never
 * enters a sandbox), streams the answer back as it comes and meters the tokens it carries. The
 * upstream's path is its own for the call, never taken from the request.
 */
export function modelProxyRoutes(
  service: RunnerService,
  upstream: ModelUpstream,
  policy: ModelPolicy,
  checker: PolicyChecker,
  log: (m: string) => void,
): Router {
  const router = Router();
  const inFlight = new KeyedSlots(policy.maxCallsInFlight);
  const requestBytes = new KeyedMinuteAllowance(policy.requestBytesPerMinute);
  for (const [callPath, call] of Object.entries(PROXIED_CALLS) as Array<[string, ProxiedCall]>) {
    router.post(`${MODEL_BASE}${callPath}`, (req, res) => proxy(req, res, call));
  }
  router.all(`${MODEL_BASE}/{*rest}`, (req, res) => {
    anthropicError(
      res,
      404,
      'not_found_error',
      `${req.method} ${req.path} is not offered here: only POST /v1/messages and /v1/messages/count_tokens`,
    );
  });

  async function proxy(req: Request, res: Response, call: ProxiedCall): Promise<void> {
    const token = req.get('x-api-key') ?? bearer(req);
    let turn: Turn;
    try {
      turn = await service.authenticateRunner(token);
    } catch (error) {
      if (error instanceof ServiceError) return anthropicError(res, 401, 'authentication_error', error.message);
      throw error;
    }
    // A slot is held from the first byte of the body: bodies still arriving count too.
    if (!inFlight.take(turn.id)) {
      res.setHeader('retry-after', '1');
      return anthropicError(
        res,
        429,
        'rate_limit_error',
        `refused by clauderun: this turn already has ${policy.maxCallsInFlight} model calls in flight`,
      );
    }
    try {
      let bytes: Buffer;
      try {
        bytes = await bodyBytes(req, MAX_MODEL_REQUEST_BYTES);
      } catch (error) {
        if (error instanceof ServiceError && error.code === 'too_large') return anthropicError(res, 413, 'request_too_large', error.message);
        throw error;
      }
      if (!requestBytes.spend(turn.userId, bytes.length)) {
        res.setHeader('retry-after', String(requestBytes.secondsToNextMinute()));
        return anthropicError(
          res,
          429,
          'rate_limit_error',
          `refused by clauderun: this user's sandboxes sent over ${policy.requestBytesPerMinute} bytes of model requests this minute`,
        );
      }
      const verdict = await checker.check(call, bytes);
      if (!verdict.ok) return anthropicError(res, 400, 'invalid_request_error', `refused by clauderun: ${verdict.message}`);
      await forward(req, res, turn, call, verdict);
    } finally {
      inFlight.give(turn.id);
    }
  }

  async function forward(
    req: Request,
    res: Response,
    turn: Turn,
    call: ProxiedCall,
    request: { body: string; model: string; maxTokens: number },
  ): Promise<void> {
    const { body } = request;
    const headers: Record<string, string> = {};
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = req.get(name);
      if (value !== undefined) headers[name] = value;
    }
    const betas = allowedBetas(req.get('anthropic-beta'));
    if (betas !== undefined) headers['anthropic-beta'] = betas;
    let answer: globalThis.Response;
    try {
      // The answer is read to its end even if the sandbox hangs up: its usage comes last, and a
      // call cut short is billed all the same. Only a stuck upstream is given up on.
      answer = await upstream.send({
        call,
        // The CLI marks its beta calls with ?beta=true; nothing else of the query is passed on.
        beta: req.query.beta === 'true',
        headers,
        body: Buffer.from(body),
        signal: AbortSignal.timeout(MODEL_CALL_TIMEOUT_MS),
      });
    } catch (error) {
      if (error instanceof UpstreamCredentialsError) {
        const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
        log(`turn ${turn.id}: ${error.message}${cause}`);
        return anthropicError(res, 502, 'api_error', error.message);
      }
      log(`turn ${turn.id}: model upstream unreachable: ${(error as Error).message}`);
      return anthropicError(res, 502, 'api_error', 'the model API could not be reached');
    }
    res.status(answer.status);
    for (const name of FORWARDED_RESPONSE_HEADERS) {
      const value = answer.headers.get(name);
      if (value !== null) res.setHeader(name, value);
    }
    const meter = new UsageMeter();
    const streaming = (answer.headers.get('content-type') ?? '').includes('text/event-stream');
    const decoder = new TextDecoder();
    let whole = '';
    let answerBytes = 0;
    try {
      if (answer.body !== null) {
        for await (const chunk of answer.body) {
          if (res.writable) res.write(chunk);
          answerBytes += chunk.length;
          const text = decoder.decode(chunk, { stream: true });
          if (streaming) meter.pushSse(text);
          // Kept for metering up to a size no real answer reaches; past it, the call counts at its worst.
          else if (whole.length < 1_000_000) whole += text;
        }
      }
      if (!streaming && answer.ok) meter.pushJson(whole);
      res.end();
    } catch (error) {
      log(`turn ${turn.id}: model stream interrupted: ${(error as Error).message}`);
      res.destroy();
    } finally {
      // Counting tokens is free. A Messages call whose usage could not be read counts as the most
      // it can have cost: all of its input, and an answer's worth of output (a token is at least a
      // few of its bytes), up to its max_tokens.
      if (call === 'messages' && answer.ok) {
        meter.assumeWorstUnlessRead({ inputTokens: roughTokens(body), outputTokens: Math.min(request.maxTokens, Math.ceil(answerBytes / 4)) });
      }
      const { usage, model } = meter.result();
      if (call === 'messages' && usage.modelCalls > 0)
        await service.recordUsage(turn, usage, costUsd(model ?? request.model, usage, upstream.priceFactor));
    }
  }

  return router;
}

function anthropicError(res: Response, status: number, type: string, message: string): void {
  res.status(status).json({ type: 'error', error: { type, message } });
}
