import http, { type RequestListener } from 'node:http';
import * as functions from '@google-cloud/functions-framework';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import express, { type Express } from 'express';
import { type BodyLimits, bodyWithin } from './body.js';
import { answerClientErrorsAsJson, errorHandler, originFormOnly } from './errors.js';

/**
 * Serves `handler` as a Functions Framework HTTP function: the framework's own server (its body
 * parsers, routing and wrappers), with one addition. The framework answers errors raised before
 * the function runs, such as unparseable JSON, with an HTML page and a stack trace
 * (functions-framework-nodejs#686); here they reach our JSON error handler instead.
 */
export function frameworkServer(name: string, handler: Express, log: (message: string) => void, bodyLimits: BodyLimits): http.Server {
  functions.http(name, handler);
  const [framework] = getTestServer(name).listeners('request') as RequestListener[];
  if (framework === undefined) throw new Error('the Functions Framework server has no request handler');
  // An Express app called with a `next` passes its unhandled errors to it.
  const callFramework = framework as unknown as express.RequestHandler;
  const outer = express();
  outer.disable('x-powered-by');
  outer.use(originFormOnly);
  outer.use(bodyWithin(bodyLimits));
  outer.use(callFramework);
  outer.use(errorHandler(log));
  return answerClientErrorsAsJson(http.createServer(outer));
}
