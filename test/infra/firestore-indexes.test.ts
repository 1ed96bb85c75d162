import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { indexKey, parseFirestoreIndexes, readFirestoreIndexes } from '../../infra/firestore-indexes.js';

const valid = {
  indexes: [
    {
      collectionGroup: 'turns',
      queryScope: 'COLLECTION',
      fields: [
        { fieldPath: 'conversationId', order: 'ASCENDING' },
        { fieldPath: 'createdAt', order: 'ASCENDING' },
      ],
    },
  ],
  fieldOverrides: [],
};

describe('firestore.indexes.json', () => {
  test('is read in the format firebase deploy reads', () => {
    const [index] = parseFirestoreIndexes(JSON.stringify(valid), 'test');
    expect(index).toEqual(valid.indexes[0]);
    expect(indexKey(index!)).toBe('turns-conversationId-asc-createdAt-asc');
  });

  test.each<[string, unknown, RegExp]>([
    [
      'a single-field index (Firestore makes those itself)',
      { indexes: [{ ...valid.indexes[0], fields: [valid.indexes[0]!.fields[0]] }] },
      /at least two fields/,
    ],
    [
      'a field without an order',
      { indexes: [{ ...valid.indexes[0], fields: [{ fieldPath: 'a' }, { fieldPath: 'b', order: 'ASCENDING' }] }] },
      /indexes\.0\.fields\.0/,
    ],
    ['the same index twice', { indexes: [valid.indexes[0], valid.indexes[0]] }, /declared twice/],
    ['no indexes list', { fieldOverrides: [] }, /indexes/],
  ])('refuses %s, naming the place', (_, file, message) => {
    expect(() => parseFirestoreIndexes(JSON.stringify(file), 'f.json')).toThrow(message);
  });

  test('a missing file says what it is for', () => {
    expect(() => readFirestoreIndexes('/nonexistent/firestore.indexes.json')).toThrow(/not found: the Firestore store declares/);
  });

  test.runIf(existsSync('firestore.indexes.json'))("the store's own file is valid", () => {
    expect(readFirestoreIndexes('firestore.indexes.json').length).toBeGreaterThan(0);
    expect(() => JSON.parse(readFileSync('firestore.indexes.json', 'utf8'))).not.toThrow();
  });
});
