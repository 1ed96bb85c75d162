import firestorePackage from '@google-cloud/firestore';

/**
 * Counts the Firestore operations this process's clients send, the way Firestore bills them:
 * a read per document a lookup, query or listener returns (an empty query still costs one), a
 * write per document a commit creates, changes or deletes. It reads the client library's own
 * debug log (its public `setLogFunction` hook), which shows every request and streamed response.
 */
export interface FirestoreOps {
  reads: number;
  writes: number;
  /** Reads by what asked: lookups (get/getAll, in transactions too), queries (counts too), listeners. */
  byKind: { lookups: number; queries: number; listeners: number; commits: number };
}

const LINE = /^Firestore \(\S+\) \S+ (\S+) \[[^\]]+\]: (Sending request|Received response): (.*)$/s;

export class FirestoreOpsCounter {
  private lookups = 0;
  private aggregations = 0;
  private writes = 0;
  private commits = 0;
  /** Documents each query returned so far, by the client's request tag. */
  private readonly queries = new Map<string, number>();
  /** Documents each listener was sent so far (its first answer costs a read even when empty). */
  private readonly listeners = new Map<string, number>();

  start(): void {
    // The package is CommonJS: Node's ESM loader does not see this among its named exports.
    firestorePackage.setLogFunction((message) => this.read(message));
  }

  stop(): void {
    firestorePackage.setLogFunction(null);
  }

  reset(): void {
    this.lookups = 0;
    this.aggregations = 0;
    this.listeners.clear();
    this.writes = 0;
    this.commits = 0;
    this.queries.clear();
  }

  snapshot(): FirestoreOps {
    const atLeastOne = (counts: Map<string, number>) => [...counts.values()].reduce((sum, n) => sum + Math.max(1, n), 0);
    const queries = atLeastOne(this.queries) + this.aggregations;
    const listeners = atLeastOne(this.listeners);
    return {
      reads: this.lookups + queries + listeners,
      writes: this.writes,
      byKind: { lookups: this.lookups, queries, listeners, commits: this.commits },
    };
  }

  private read(message: string): void {
    const match = LINE.exec(message);
    if (match === null) return;
    const [, tag = '', direction, json = ''] = match;
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(json) as Record<string, unknown>;
    } catch {
      return;
    }
    if (direction === 'Sending request') {
      if (Array.isArray(body.writes)) {
        this.writes += body.writes.length;
        this.commits += 1;
      }
      if (body.structuredQuery !== undefined) this.queries.set(tag, 0);
      // A count costs a read per thousand index entries it scans; these scan far fewer.
      if (body.structuredAggregationQuery !== undefined) this.aggregations += 1;
      if (body.addTarget !== undefined) this.listeners.set(tag, 0);
      return;
    }
    if (body.found !== undefined || body.missing !== undefined) this.lookups += 1;
    else if (body.document !== undefined && this.queries.has(tag)) this.queries.set(tag, (this.queries.get(tag) ?? 0) + 1);
    else if (body.documentChange !== undefined) this.listeners.set(tag, (this.listeners.get(tag) ?? 0) + 1);
  }
}
