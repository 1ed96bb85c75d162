/**
 * A link from the request at `fromPath` to `target`, both paths as the API sees them, written as
 * a relative reference (RFC 3986 section 4.2). The API cannot know the path a front end strips
 * before it sees a request (a function at https://REGION-PROJECT.cloudfunctions.net/NAME sees
 * /api/... for /NAME/api/...: cloud.google.com/run/docs/triggering/https-request), but the client
 * knows the URL it asked for: resolved against it (RFC 3986 section 5.2), the link keeps the prefix.
 * The prefix comes before both paths, so the way from one to the other does not depend on it.
 */
export function relativeLink(fromPath: string, target: string): string {
  const from = fromPath.split('/').slice(1, -1);
  const to = target.split('/').slice(1);
  let common = 0;
  while (common < from.length && common < to.length - 1 && from[common] === to[common]) common++;
  const rest = to.slice(common).join('/');
  // A first segment with a colon would read as a scheme: "./" keeps it a path (section 4.2).
  const safeRest = /^[^/]*:/.test(rest) ? `./${rest}` : rest;
  return `${'../'.repeat(from.length - common)}${safeRest}` || './';
}
