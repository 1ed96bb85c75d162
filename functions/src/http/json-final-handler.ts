import { createRequire } from 'node:module';
import path from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import { type BodyLimits, bodyWithin } from './body.js';
import { errorHandler, sendError } from './errors.js';

/**
 * Cloud Functions runs `functions-framework --target=clauderun`: the framework's own Express app
 * parses the body before our function runs, inflating gzip and accepting a gigabyte, before any
 * authentication, and answers a malformed body (bad JSON, an unknown charset or encoding) through
 * Express's default final handler, with an HTML page (functions-framework-nodejs#686). Express
 * copies `express.application` (the documented prototype of apps) into each app it creates, and
 * the framework creates its app only after it has loaded our module: replacing `handle` there
 * gives the framework's app, first to see each request, our body limit (bodyWithin: no encoded
 * bodies, nothing over its limits, read before the framework's parsers, which then leave it
 * alone) and every app our JSON errors. Our own apps never reach the final handler (they end
 * with a JSON 404 and a JSON error handler). One service per process: the deployed entry point.
 */
export function guardFrameworkApps(log: (message: string) => void, bodyLimits: BodyLimits): void {
  requireOneExpress();
  // Express's types do not declare `handle`, the method every request goes through.
  const application = express.application as unknown as { handle: Handle; [PATCHED]?: true };
  if (application[PATCHED]) throw new Error('the Functions Framework apps are guarded already: one service per process');
  const handle = application.handle;
  const jsonErrors = errorHandler(log);
  const readBody = bodyWithin(bodyLimits);
  const bodiesRead = new WeakSet<Request>();
  application.handle = function guardedHandle(this: ExpressApp, req: Request, res: Response, callback?: NextFunction) {
    const done =
      callback ??
      ((error?: unknown) => {
        if (error !== undefined && error !== null) return jsonErrors(error, req, res, () => {});
        sendError(res, 'not_found', `no route for ${req.method} ${req.path}`);
      });
    // The outermost app (the framework's) reads the body; the apps it calls find it read.
    if (bodiesRead.has(req)) return handle.call(this, req, res, done);
    bodiesRead.add(req);
    // What Express's own handle does first, so that a refusal can be answered as JSON.
    Object.setPrototypeOf(req, this.request);
    Object.setPrototypeOf(res, this.response);
    Object.assign(req, { res });
    Object.assign(res, { req });
    readBody(req, res, (error?: unknown) => (error === undefined ? handle.call(this, req, res, done) : done(error)));
  };
  application[PATCHED] = true;
}

type Handle = (req: Request, res: Response, callback?: NextFunction) => void;
interface ExpressApp {
  request: object;
  response: object;
}
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
