import { describe, expect, it } from 'vitest';
import { outputOf, runScript } from '../support/in-sandbox.js';
import { linkPath, prompt, useServiceWithFake } from '../support/service.js';
import { readEvents } from '../support/sse.js';

/**
 * Some kernel limits are counted per uid, not per cgroup or namespace (inotify instances, pipe
 * buffers). Sandboxes that shared a uid would share them: one tenant could use them up for all.
 */
describe('a tool in the sandbox, using up what the kernel counts per uid', () => {
  const running = useServiceWithFake();

  const python = (code: string) => `python3 - <<'PY'\n${code}\nPY\n`;
  // inotify_init1 until the kernel refuses; then it says so as a progress event, and holds them.
  const hog = python(`
import base64, ctypes, http.client, json, os, time
libc = ctypes.CDLL(None, use_errno=True)
held = []
while libc.inotify_init1(0) >= 0: held.append(1)
token = os.environ["ANTHROPIC_API_KEY"]
payload = token.split(".")[1]
turn = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["turnId"]
api = http.client.HTTPConnection("127.0.0.1", 8080)
api.request("POST", "/internal/turns/" + turn + "/events", json.dumps({"events": [{"type": "text", "text": "EXHAUSTED %d" % len(held)}]}),
            {"authorization": "Bearer " + token, "content-type": "application/json"})
api.getresponse().read()
time.sleep(15)
print("HELD", len(held))
`);
  const probe = python(`
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("PROBE", "ok" if libc.inotify_init1(0) >= 0 else os.strerror(ctypes.get_errno()))
`);

  it('leaves another sandbox its inotify instances while one has used up its own', async () => {
    const started = await prompt(running.service, 'hog', { message: `bash: ${hog}` }, { prefer: 'respond-async' });
    const events = `${running.service.url}${linkPath((started.body.links as { events: string }).events)}`;
    const seen = await readEvents(
      events,
      { 'x-user-id': 'hog' },
      (event) => event.event === 'text' && JSON.stringify(event.data).includes('EXHAUSTED'),
    );
    expect(seen.events.some((event) => JSON.stringify(event.data).includes('EXHAUSTED'))).toBe(true);
    // The hog holds every instance its uid may have; the neighbour's sandbox still gets one.
    const probed = outputOf(await runScript(running.service, probe, { userId: 'neighbour', language: 'sh' }));
    expect(probed).toContain('PROBE ok');
  });
});
