import * as functions from '@google-cloud/functions-framework';
import { createClauderun } from './app.js';
import { loadConfig } from './config.js';

/**
 * The HTTP function `clauderun`: what `npm start` serves locally and what Cloud Functions runs.
 * A bad configuration stops start-up here, with a message naming the variable.
 */
const clauderun = await createClauderun(loadConfig(process.env));
functions.http('clauderun', clauderun.app);
