import { Router, type Request, type Response } from 'express';
import { ServiceError } from '../conversations/errors.js';
import type { RunnerService } from '../conversations/runner-service.js';
import { UsageMeter } from '../model/metering.js';
import { costUsd } from '../model/pricing.js';
import type { ModelUpstream } from '../model/upstream.js';
import type { Turn } from '../store/conversation-store.js';
import { bodyBytes } from './body.js';
import { bearer } from './internal-routes.js';

const FORWARDED_REQUEST_HEADERS = ['anthropic-version', 'anthropic-beta', 'content-type', 'accept'];
const FORWARDED_RESPONSE_HEADERS = ['content-type', 'request-id', 'retry-after', 'anthropic-ratelimit-requests-remaining'];

/**
 * The agent's model endpoint. The sandbox presents its turn token as the API key; the proxy
 * checks it, sends the call on with the real key (which never enters a sandbox), streams the
 * answer back as it comes and meters the tokens it carries.
 */
export function modelProxyRoutes(service: RunnerService, upstream: ModelUpstream, log: (m: string) => void): Router {
  const router = Router();
  router.post('/internal/model/v1/{*rest}', async (req, res) => {
    const token = req.get('x-api-key') ?? bearer(req);
    let turn: Turn;
    try {
      turn = await service.authenticateRunner(token);
    } catch (error) {
      if (error instanceof ServiceError) return anthropicError(res, 401, 'authentication_error', error.message);
      throw error;
    }
    const controller = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    const query = req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?')) : '';
    const headers: Record<string, string> = {};
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = req.get(name);
      if (value !== undefined) headers[name] = value;
    }
    let answer: globalThis.Response;
    try {
      answer = await upstream.send({ pathAndQuery: `/v1/${restOf(req)}${query}`, headers, body: await bodyBytes(req), signal: controller.signal });
    } catch (error) {
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
    try {
      if (answer.body !== null) {
        for await (const chunk of answer.body) {
          res.write(chunk);
          const text = decoder.decode(chunk, { stream: true });
          if (streaming) meter.pushSse(text);
          else if (whole.length < 1_000_000) whole += text;
        }
      }
      if (!streaming && answer.ok) meter.pushJson(whole);
      res.end();
    } catch (error) {
      log(`turn ${turn.id}: model stream interrupted: ${(error as Error).message}`);
      res.destroy();
    } finally {
      const { usage, model } = meter.result();
      if (usage.modelCalls > 0) await service.recordUsage(turn, usage, costUsd(model, usage, upstream.name));
    }
  });
  return router;
}

function restOf(req: Request): string {
  const rest = (req.params as { rest?: string[] | string }).rest;
  return (Array.isArray(rest) ? rest : [rest ?? '']).map(encodeURIComponent).join('/');
}

function anthropicError(res: Response, status: number, type: string, message: string): void {
  res.status(status).json({ type: 'error', error: { type, message } });
}
