import { describe, expect, it } from 'vitest';
import { relativeLink } from '../../functions/src/contract/relative-link.js';

/** Where a client ends up: the link resolved against the URL it asked for (RFC 3986 section 5). */
const followed = (requested: string, link: string) => new URL(link, requested).href;

describe('links relative to the request', () => {
  const target = '/api/conversations/c1/turns/t1/events';

  it('lead to the same place under any path prefix the API never sees', () => {
    for (const origin of [
      'https://clauderun-123.europe-west1.run.app',
      'https://europe-west1-proj.cloudfunctions.net/clauderun',
      'http://127.0.0.1:8080/a/b',
    ]) {
      const link = relativeLink('/api/conversation', target);
      expect(followed(`${origin}/api/conversation`, link)).toBe(`${origin}${target}`);
    }
  });

  it('are short where they can be, and right for a request path with a trailing slash or other case', () => {
    expect(relativeLink('/api/conversation', target)).toBe('conversations/c1/turns/t1/events');
    const prefix = 'https://europe-west1-proj.cloudfunctions.net/clauderun';
    for (const requested of ['/api/conversation/', '/API/Conversation', '/api/conversation']) {
      expect(followed(`${prefix}${requested}?x=1`, relativeLink(requested, target))).toBe(`${prefix}${target}`);
    }
  });

  it('never read as a URL of their own (a scheme, another host)', () => {
    expect(relativeLink('/x', '/a:b/c')).toBe('./a:b/c');
    expect(followed('https://h/p/x', relativeLink('/x', '/a:b/c'))).toBe('https://h/p/a:b/c');
    expect(relativeLink('/a/b', '/a/b')).toBe('b');
    expect(relativeLink('/a/', '/a/')).toBe('./');
  });
});
