import * as functions from '@google-cloud/functions-framework';

/**
 * A function that shows what the platform does to it, for the simulation's own tests: it answers
 * with its pid, waits, sends bodies of any size with or without a length, counts what it was
 * sent, and counts the ticks of a timer that runs only while the process has CPU.
 */
let ticks = 0;
setInterval(() => ticks++, 50);
const bootedAt = Date.now();

functions.http('probe', (req, res) => {
  const url = new URL(req.url, 'http://probe');
  const n = Number(url.searchParams.get('n') ?? 0);
  switch (url.pathname) {
    case '/whoami':
      res.json({
        pid: process.pid,
        path: req.url,
        ticks,
        bootedAt,
        env: { K_SERVICE: process.env.K_SERVICE, FUNCTION_TARGET: process.env.FUNCTION_TARGET },
      });
      return;
    case '/wait':
      setTimeout(() => res.json({ pid: process.pid, waited: n }), n);
      return;
    case '/bytes': {
      const body = Buffer.alloc(n, 0x61);
      if (url.searchParams.get('stream') === '1') {
        res.status(200).type('application/octet-stream');
        // Written in pieces, with no Content-Length: a streamed response.
        for (let at = 0; at < n; at += 1024 * 1024) res.write(body.subarray(at, at + 1024 * 1024));
        res.end();
      } else res.status(200).type('application/octet-stream').send(body);
      return;
    }
    case '/count': {
      // The framework has read a raw body already for non-JSON types (req.rawBody), up to its own limit.
      const raw = (req as unknown as { rawBody?: Buffer }).rawBody;
      res.json({ received: raw?.length ?? 0 });
      return;
    }
    default:
      res.status(404).json({ error: 'no such probe' });
  }
});
