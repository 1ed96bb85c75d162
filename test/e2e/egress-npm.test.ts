import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { HOST_NPM, INSTALL_AND_USE, PACKAGE, startNpmRegistry, type NpmRegistry } from '../fixtures/npm-registry.js';
import { prompt, startService, type RunningService } from '../support/service.js';

/**
 * A real package manager in the real sandbox: the host's npm installs a package from a stand-in
 * registry that only the configured allowlist and the tunnel lead to.
 */
describe('npm install through the egress allowlist', () => {
  let fake: FakeAnthropic;
  let service: RunningService;
  let registry: NpmRegistry;
  beforeAll(async () => {
    registry = await startNpmRegistry();
    fake = await startFakeAnthropic();
    service = await startService({ ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url, ...registry.egressEnv });
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await fake?.close();
    await registry?.close();
  });

  // The sandbox sees the host's /usr: where npm was installed elsewhere (nvm, say), it has none.
  it.skipIf(!existsSync(HOST_NPM))('installs a package from an allowed registry, and cannot reach the public one (needs /usr/bin/npm)', async () => {
    const answer = await prompt(service, `npm-${randomUUID()}`, { message: `bash: ${INSTALL_AND_USE}` });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(String(answer.body.text)).toContain('padded:...x');
    expect(registry.requested).toContain(`GET /${PACKAGE}/-/${PACKAGE}-1.0.0.tgz`);

    const refused = await prompt(service, `npm-${randomUUID()}`, {
      message: 'bash: cd /workspace && npm view left-pad version --no-update-notifier --fetch-retries=0 --cache /tmp/npm-cache 2>&1 | tail -3',
    });
    // The proxy's 403 for the CONNECT to a host the allowlist does not name (npm shows its status, not its body).
    expect(String(refused.body.text)).toContain('403 Forbidden - GET https://registry.npmjs.org/left-pad');
  });
});
