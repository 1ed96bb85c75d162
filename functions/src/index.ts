import * as functions from '@google-cloud/functions-framework';
import { createClauderun } from './app.js';
import { loadConfig } from './config.js';
import { guardFrameworkApps } from './http/json-final-handler.js';

/**
 * The HTTP function `clauderun`: what Cloud Functions runs (`functions-framework
 * --target=clauderun`). A bad configuration stops start-up here, with a message naming the variable.
 */
const log = (message: string) => console.error(`clauderun: ${message}`);
const clauderun = await createClauderun(loadConfig(process.env), { log });
guardFrameworkApps(log, clauderun.bodyLimits);
functions.http('clauderun', clauderun.app);
