import { EventEmitter } from 'node:events';
import type { Turn, TurnEvent } from '../store/conversation-store.js';

/**
 * In-process fan-out of what happens to turns: each event as it is stored, and the moment a turn
 * becomes final. (In the cloud a store listener plays this part across instances.)
 */
export class TurnBus {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  publish(event: TurnEvent): void {
    this.emitter.emit(`event:${event.turnId}`, event);
  }

  finished(turn: Turn): void {
    this.emitter.emit(`final:${turn.id}`, turn);
  }

  /** Calls back for every event of the turn until unsubscribed. */
  onEvent(turnId: string, listener: (event: TurnEvent) => void): () => void {
    this.emitter.on(`event:${turnId}`, listener);
    return () => this.emitter.off(`event:${turnId}`, listener);
  }

  /** Calls back once when the turn finishes; returns an unsubscribe function. */
  onFinished(turnId: string, listener: (turn: Turn) => void): () => void {
    this.emitter.once(`final:${turnId}`, listener);
    return () => this.emitter.off(`final:${turnId}`, listener);
  }
}
