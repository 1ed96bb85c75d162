import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Router, type Response } from 'express';
import type { Config } from '../config.js';
import type { ClientConfig } from '../contract/api.js';
import { PUBLIC_ROUTES } from '../contract/routes.js';
import { projectRoot } from '../project-root.js';
import { sendError } from './errors.js';

/**
 * Where `npm run build` puts the web page (scripts/bundle-web.mjs). Inside dist/functions so that
 * the function's source upload, which is made of dist/functions, serves the page too.
 */
export const WEB_BUILD_DIR = path.join('dist', 'functions', 'web');

const FILES = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/styles.css': { file: 'styles.css', type: 'text/css; charset=utf-8' },
} as const;

export interface WebRoutesOptions {
  /** The built page; by default WEB_BUILD_DIR under the project root. */
  dir?: string;
}

/** The web page (same origin as the API) and the one unauthenticated call it needs before sign-in. */
export function webRoutes(config: Config, options: WebRoutesOptions = {}): Router {
  const dir = options.dir ?? path.join(projectRoot(), WEB_BUILD_DIR);
  const clientConfig = clientConfigOf(config);
  const router = Router();

  router.get(PUBLIC_ROUTES.clientConfig, (_req, res) => {
    res.setHeader('Cache-Control', 'no-cache');
    res.json(clientConfig);
  });

  for (const [route, { file, type }] of Object.entries(FILES)) {
    router.get(route, async (_req, res) => {
      const body = await readFile(path.join(dir, file)).catch(() => undefined);
      if (body === undefined) {
        return sendError(res, 'unavailable', `the web page is not built: ${path.join(WEB_BUILD_DIR, file)} is missing (run npm run build)`);
      }
      pageHeaders(res, contentSecurityPolicy(clientConfig, type.startsWith('text/html') ? inlineScriptHashes(body.toString('utf8')) : []));
      res.type(type).send(body);
    });
  }
  return router;
}

function clientConfigOf(config: Config): ClientConfig {
  const { firebase, webSignIn } = config.auth;
  return {
    authModes: [...config.auth.modes],
    firebase:
      firebase !== undefined && webSignIn !== undefined
        ? { apiKey: webSignIn.apiKey, projectId: firebase.projectId, authUrl: webSignIn.authUrl, tokenUrl: webSignIn.tokenUrl }
        : null,
    models: [...config.agent.models],
    defaultModel: config.agent.model,
  };
}

/**
 * The CSP sources (sha256-...) of the page's own inline scripts, as written in its file: those run,
 * and no other inline script does (CSP Level 3, "hash-source").
 */
export function inlineScriptHashes(html: string): string[] {
  return [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map(
    (m) =>
      `'sha256-${createHash('sha256')
        .update(m[1] ?? '')
        .digest('base64')}'`,
  );
}

/**
 * Only our own files (and the page's own inline scripts, by hash) may run or style the page, and
 * it may talk only to the API (plus the sign-in and token endpoints when Firebase sign-in is on): injected
 * markup, were any to slip through, could neither run script nor send data elsewhere.
 */
function contentSecurityPolicy(clientConfig: ClientConfig, scriptHashes: string[]): string {
  const { firebase } = clientConfig;
  const signInOrigins = firebase === null ? [] : [firebase.authUrl, firebase.tokenUrl].map((url) => new URL(url).origin);
  const connect = ["'self'", ...new Set(signInOrigins)];
  return [
    "default-src 'self'",
    `script-src ${["'self'", ...scriptHashes].join(' ')}`,
    "style-src 'self'",
    `connect-src ${connect.join(' ')}`,
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

function pageHeaders(res: Response, policy: string): void {
  res.setHeader('Content-Security-Policy', policy);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  // Revalidated every time: a new build must reach the browser at once (the files are small).
  res.setHeader('Cache-Control', 'no-cache');
}
