import type { Request, Response } from 'express';
import { ServiceError } from '../conversations/errors.js';
import type { ConversationService } from '../conversations/service.js';
import { eventView } from '../conversations/views.js';
import { TurnEventType } from '../contract/event-types.js';
import type { TurnEvent } from '../domain/turn-event.js';

const HEARTBEAT_MS = 15_000;

/**
 * A turn's events as Server-Sent Events: everything after Last-Event-ID (or ?after=), then live
 * events until the final `result`, after which the stream closes. A finished turn replays and closes.
 */
export async function streamTurnEvents(
  service: ConversationService,
  userId: string,
  req: Request<{ conversationId: string; turnId: string }>,
  res: Response,
): Promise<void> {
  const { conversationId, turnId } = req.params;
  const afterText = req.get('last-event-id') ?? (typeof req.query.after === 'string' ? req.query.after : '0');
  const after = Number(afterText);
  if (!Number.isInteger(after) || after < 0) throw new ServiceError('invalid_request', 'Last-Event-ID must be an event number');
  await service.getTurn(userId, conversationId, turnId); // 404 before any byte of the stream

  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
  res.write('retry: 2000\n\n');
  let ended = false;
  let stop = () => {};
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
  const end = () => {
    if (ended) return;
    ended = true;
    clearInterval(heartbeat);
    stop();
    res.end();
  };
  const send = (event: TurnEvent) => {
    if (ended) return;
    res.write(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(eventView(event))}\n\n`);
    if (event.type === TurnEventType.result) end();
  };
  req.on('close', end);
  const watch = await service.watchEvents(userId, conversationId, turnId, after, send);
  stop = watch.stop;
  if (ended) stop();
  else if (watch.resultAlreadySeen) end();
}
