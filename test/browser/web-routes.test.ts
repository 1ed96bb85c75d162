import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import express from 'express';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, type Env } from '../../functions/src/config.js';
import { webRoutes } from '../../functions/src/http/web-routes.js';

/** The page's routes alone, over HTTP, on a build directory the test makes (no browser needed). */
describe("the web page's routes", () => {
  const servers: Server[] = [];
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  async function serve(env: Env, files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), 'clauderun-web-'));
    dirs.push(dir);
    for (const [name, content] of Object.entries(files)) await writeFile(path.join(dir, name), content);
    const app = express().use(webRoutes(loadConfig(env), { dir }));
    const server = app.listen(0, '127.0.0.1');
    servers.push(server);
    await new Promise((resolve) => server.once('listening', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('answers 503 naming the missing build when the page was not built', async () => {
    const url = await serve({}, {});
    for (const [route, file] of [
      ['/', 'index.html'],
      ['/app.js', 'app.js'],
      ['/styles.css', 'styles.css'],
    ]) {
      const answer = await fetch(`${url}${route}`);
      expect(answer.status).toBe(503);
      expect(await answer.json()).toEqual({
        error: { code: 'unavailable', message: `the web page is not built: dist/functions/web/${file} is missing (run npm run build)` },
      });
    }
  });

  it('serves the built files with their types, no caching and a strict policy', async () => {
    const url = await serve({}, { 'index.html': '<!doctype html><title>t</title>', 'app.js': 'export {};', 'styles.css': 'body{}' });
    const expected = { '/': 'text/html; charset=utf-8', '/app.js': 'text/javascript; charset=utf-8', '/styles.css': 'text/css; charset=utf-8' };
    for (const [route, type] of Object.entries(expected)) {
      const answer = await fetch(`${url}${route}`);
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toBe(type);
      expect(answer.headers.get('cache-control')).toBe('no-cache');
      expect(answer.headers.get('x-content-type-options')).toBe('nosniff');
      expect(answer.headers.get('content-security-policy')).toBe(
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
      );
    }
    expect(await (await fetch(`${url}/app.js`)).text()).toBe('export {};');
  });

  it('tells the page the auth modes; Firebase sign-in only with a Web API key, and the policy lets it reach its origins only', async () => {
    const firebase = { CLAUDERUN_AUTH: 'apikey,firebase', FIREBASE_PROJECT_ID: 'p1' };
    const withoutKey = await serve(firebase, {});
    const models = { models: ['claude-opus-5-5', 'claude-haiku-5-5'], defaultModel: 'claude-opus-5-5' };
    expect(await (await fetch(`${withoutKey}/api/client-config`)).json()).toEqual({ authModes: ['apikey', 'firebase'], firebase: null, ...models });

    const withKey = await serve(
      { ...firebase, FIREBASE_WEB_API_KEY: 'web-key', CLAUDERUN_FIREBASE_AUTH_URL: 'http://127.0.0.1:9099/identitytoolkit.googleapis.com/' },
      { 'index.html': '<!doctype html>' },
    );
    expect(await (await fetch(`${withKey}/api/client-config`)).json()).toEqual({
      authModes: ['apikey', 'firebase'],
      // The emulator serves the Secure Token API beside the Identity Toolkit: one origin.
      firebase: {
        apiKey: 'web-key',
        projectId: 'p1',
        authUrl: 'http://127.0.0.1:9099/identitytoolkit.googleapis.com',
        tokenUrl: 'http://127.0.0.1:9099/securetoken.googleapis.com',
      },
      ...models,
    });
    expect((await fetch(`${withKey}/`)).headers.get('content-security-policy')).toContain("connect-src 'self' http://127.0.0.1:9099;");

    const google = await serve({ ...firebase, FIREBASE_WEB_API_KEY: 'web-key' }, { 'index.html': '<!doctype html>' });
    const config = (await (await fetch(`${google}/api/client-config`)).json()) as { firebase: { authUrl: string; tokenUrl: string } };
    expect(config.firebase).toMatchObject({ authUrl: 'https://identitytoolkit.googleapis.com', tokenUrl: 'https://securetoken.googleapis.com' });
    expect((await fetch(`${google}/`)).headers.get('content-security-policy')).toContain(
      "connect-src 'self' https://identitytoolkit.googleapis.com https://securetoken.googleapis.com;",
    );

    const elsewhere = await serve({ ...firebase, FIREBASE_WEB_API_KEY: 'web-key', CLAUDERUN_FIREBASE_TOKEN_URL: 'http://127.0.0.1:9098/' }, {});
    const set = (await (await fetch(`${elsewhere}/api/client-config`)).json()) as { firebase: { tokenUrl: string } };
    expect(set.firebase.tokenUrl).toBe('http://127.0.0.1:9098');
  });

  it('refuses a sign-in URL that is not one', () => {
    expect(() => loadConfig({ CLAUDERUN_FIREBASE_AUTH_URL: 'not a url' })).toThrow(/CLAUDERUN_FIREBASE_AUTH_URL must be a URL/);
    expect(() => loadConfig({ CLAUDERUN_FIREBASE_TOKEN_URL: 'not a url' })).toThrow(/CLAUDERUN_FIREBASE_TOKEN_URL must be a URL/);
  });
});
