import { EventEmitter } from 'node:events';
import type { Turn } from '../store/conversation-store.js';

/** In-process notification that a turn reached a final state (the local stand-in for a listener). */
export class TurnEvents {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  finished(turn: Turn): void {
    this.emitter.emit(turn.id, turn);
  }

  /** Calls back once when the turn finishes; returns an unsubscribe function. */
  onFinished(turnId: string, listener: (turn: Turn) => void): () => void {
    this.emitter.once(turnId, listener);
    return () => this.emitter.off(turnId, listener);
  }
}
