import { createRequire } from 'node:module';
import path from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import { errorHandler, sendError } from './errors.js';

/**
 * Cloud Functions runs `functions-framework --target=clauderun`: the framework's own Express app
 * parses the body before our function runs, and answers a malformed body (bad JSON, an unknown
 * charset or encoding) through Express's default final handler, with an HTML page
 * (functions-framework-nodejs#686). Express copies `express.application` (the documented
 * prototype of apps) into each app it creates, and the framework creates its app only after it
 * has loaded our module: replacing the default final handler there gives every app made from then
 * on, the framework's included, our JSON errors. Our own apps never reach it (they end with a JSON
 * 404 and a JSON error handler).
 */
export function answerFrameworkErrorsAsJson(log: (message: string) => void): void {
  requireOneExpress();
  // Express's types do not declare `handle`, the method every request goes through.
  const application = express.application as unknown as { handle: Handle; [PATCHED]?: true };
  if (application[PATCHED]) return;
  const handle = application.handle;
  const jsonErrors = errorHandler(log);
  application.handle = function handleWithJsonEnd(this: unknown, req: Request, res: Response, callback?: NextFunction) {
    const done =
      callback ??
      ((error?: unknown) => {
        if (error !== undefined && error !== null) return jsonErrors(error, req, res, () => {});
        sendError(res, 'not_found', `no route for ${req.method} ${req.path}`);
      });
    return handle.call(this, req, res, done);
  };
  application[PATCHED] = true;
}

type Handle = (req: Request, res: Response, callback?: NextFunction) => void;
const PATCHED = Symbol.for('clauderun.jsonFinalHandler');

/**
 * The framework must build its app from this very Express: with a copy of its own (a version
 * range that stops overlapping ours) the patch would silently not apply, so start-up stops.
 */
function requireOneExpress(): void {
  const require = createRequire(import.meta.url);
  const framework = path.dirname(require.resolve('@google-cloud/functions-framework'));
  const theirs = require.resolve('express', { paths: [framework] });
  const ours = require.resolve('express');
  if (theirs !== ours) {
    throw new Error(`the Functions Framework uses its own copy of express (${theirs}), not the service's (${ours}): align their versions`);
  }
}
