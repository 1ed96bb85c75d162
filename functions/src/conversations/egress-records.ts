import { egressEvent, type EgressData } from '../contract/events.js';
import type { Turn } from '../domain/turn.js';
import type { ConversationStore } from '../store/conversation-store.js';

type TurnRef = Pick<Turn, 'id' | 'userId'>;

interface Batch {
  turn: TurnRef;
  attempts: EgressData[];
  settle: { resolve: () => void; reject: (error: unknown) => void }[];
}

/**
 * The connections out of a turn, written to the store one batch at a time: while a write for a
 * turn is in flight, the attempts that end meanwhile wait and go together in the next one. An
 * `npm install` ends hundreds of connections within seconds, and each write is a transaction on
 * the turn's document (and its user's), which Firestore delays or fails when many contend for
 * it. A lone attempt is written at once: nothing waits on a timer.
 */
export class EgressRecords {
  /** The turns with a write in flight, and per turn the batch waiting for it. */
  private readonly writing = new Set<string>();
  private readonly waiting = new Map<string, Batch>();

  constructor(private readonly store: Pick<ConversationStore, 'recordEgress'>) {}

  /** Resolves once the attempt is in the store (or rejects with the write's error). */
  record(turn: TurnRef, attempt: EgressData): Promise<void> {
    return new Promise((resolve, reject) => {
      const batch = this.waiting.get(turn.id) ?? { turn, attempts: [], settle: [] };
      batch.attempts.push(attempt);
      batch.settle.push({ resolve, reject });
      this.waiting.set(turn.id, batch);
      if (!this.writing.has(turn.id)) this.writeNext(turn.id);
    });
  }

  private writeNext(turnId: string): void {
    const batch = this.waiting.get(turnId);
    if (batch === undefined) {
      this.writing.delete(turnId);
      return;
    }
    this.waiting.delete(turnId);
    this.writing.add(turnId);
    const bytes = batch.attempts.reduce((sum, a) => sum + a.bytesOut + a.bytesIn, 0);
    this.store
      .recordEgress(batch.turn, batch.attempts.map(egressEvent), bytes)
      .then(
        () => {
          for (const { resolve } of batch.settle) resolve();
        },
        (error: unknown) => {
          for (const { reject } of batch.settle) reject(error);
        },
      )
      .finally(() => this.writeNext(turnId));
  }
}
