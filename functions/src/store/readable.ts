/**
 * The records among stored values that read: one that does not (edited by hand, or written by a
 * bug) is left out of the list, with a word on stderr naming it, rather than failing every list
 * it would be in: a conversation's turns, the sweep, and start-up's recovery would all stop at it.
 * A read of that one record still fails, naming it.
 */
export function readable<Stored, Record>(stored: readonly Stored[], read: (value: Stored) => Record, what: (value: Stored) => string): Record[] {
  const records: Record[] = [];
  for (const value of stored) {
    try {
      records.push(read(value));
    } catch (error) {
      console.error(`clauderun: ${what(value)} cannot be read and is left out: ${(error as Error).message.slice(0, 500)}`);
    }
  }
  return records;
}
