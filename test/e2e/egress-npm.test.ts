import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { prompt, startService, type RunningService } from '../support/service.js';

const REGISTRY = 'registry.allowed.test';
const PACKAGE = 'pad-left-lite';
const HOST_NPM = '/usr/bin/npm';

/** A package as npm publishes it: a gzipped tar of package/, and the registry's document naming it with its integrity. */
function packTarball(): Buffer {
  const dir = mkdtempSync(path.join(tmpdir(), 'clauderun-npm-pkg-'));
  try {
    mkdirSync(path.join(dir, 'package'));
    writeFileSync(path.join(dir, 'package', 'package.json'), JSON.stringify({ name: PACKAGE, version: '1.0.0', main: 'index.js' }));
    writeFileSync(path.join(dir, 'package', 'index.js'), "module.exports = (s, n) => String(s).padStart(n, '.');\n");
    execFileSync('tar', ['-czf', path.join(dir, 'p.tgz'), '-C', dir, 'package']);
    return readFileSync(path.join(dir, 'p.tgz'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A real package manager in the real sandbox: the host's npm (the local sandbox shares the host's
 * /usr, read-only) installs a package from a stand-in registry that only the configured allowlist
 * and the tunnel lead to.
 */
describe('npm install through the egress allowlist', () => {
  let fake: FakeAnthropic;
  let service: RunningService;
  let registry: http.Server;
  const requested: string[] = [];
  beforeAll(async () => {
    const tarball = packTarball();
    const integrity = `sha512-${createHash('sha512').update(tarball).digest('base64')}`;
    registry = http.createServer((req, res) => {
      requested.push(`${req.method} ${req.url}`);
      if (req.url === `/${PACKAGE}`) {
        const version = { name: PACKAGE, version: '1.0.0', dist: { tarball: `http://${REGISTRY}/${PACKAGE}/-/${PACKAGE}-1.0.0.tgz`, integrity } };
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ name: PACKAGE, 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': version } }));
      } else if (req.url === `/${PACKAGE}/-/${PACKAGE}-1.0.0.tgz`) {
        res.setHeader('content-type', 'application/octet-stream');
        res.end(tarball);
      } else {
        res.statusCode = 404;
        res.end('{}');
      }
    });
    await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
    const port = (registry.address() as net.AddressInfo).port;
    fake = await startFakeAnthropic();
    service = await startService({
      ANTHROPIC_API_KEY: fake.apiKey,
      ANTHROPIC_BASE_URL: fake.url,
      CLAUDERUN_EGRESS_ALLOW: `${REGISTRY}:80`,
      CLAUDERUN_EGRESS_TEST_RESOLVE: `${REGISTRY}=127.0.0.1:${port}`,
    });
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await fake?.close();
    registry?.closeAllConnections();
    await new Promise<void>((resolve) => registry?.close(() => resolve()));
  });

  // The sandbox sees the host's /usr: where npm was installed elsewhere (nvm, say), it has none.
  it.skipIf(!existsSync(HOST_NPM))('installs a package from an allowed registry, and cannot reach the public one (needs /usr/bin/npm)', async () => {
    const install =
      `cd /workspace && npm install --registry http://${REGISTRY}/ ${PACKAGE} --no-audit --no-fund --no-update-notifier --cache /tmp/npm-cache 2>&1 | tail -3; ` +
      `node -e "console.log('padded:' + require('${PACKAGE}')('x', 4))"`;
    const answer = await prompt(service, `npm-${randomUUID()}`, { message: `bash: ${install}` });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(String(answer.body.text)).toContain('padded:...x');
    expect(requested).toContain(`GET /${PACKAGE}/-/${PACKAGE}-1.0.0.tgz`);

    const refused = await prompt(service, `npm-${randomUUID()}`, {
      message: 'bash: cd /workspace && npm view left-pad version --no-update-notifier --fetch-retries=0 --cache /tmp/npm-cache 2>&1 | tail -3',
    });
    // The proxy's 403 for the CONNECT to a host the allowlist does not name (npm shows its status, not its body).
    expect(String(refused.body.text)).toContain('403 Forbidden - GET https://registry.npmjs.org/left-pad');
  });
});
