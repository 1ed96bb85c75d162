import type { AgentOptions } from '../contract/api.js';
import type { AgentSettings } from '../config.js';
import { ServiceError } from './errors.js';

/**
 * The options a turn runs with: its conversation's, each one the turn gives replacing the
 * conversation's (a list replaces a list; it is not merged).
 */
export function turnOptions(conversation: AgentOptions, override: AgentOptions | undefined): AgentOptions {
  return { ...conversation, ...override };
}

/**
 * Refuses options the deployment does not allow: a model the model proxy would refuse (it
 * enforces the same list, so a turn with it could only fail), or a tool both allowed and taken away.
 */
export function checkOptions(options: AgentOptions, agent: Pick<AgentSettings, 'models'>): AgentOptions {
  if (options.model !== undefined && !agent.models.includes(options.model)) {
    throw new ServiceError(
      'invalid_request',
      `options.model: ${JSON.stringify(options.model)} is not offered here; allowed: ${agent.models.join(', ')}`,
      {
        allowed: [...agent.models],
      },
    );
  }
  const both = (options.allowedTools ?? []).filter((name) => options.disallowedTools?.includes(name));
  if (both.length > 0) {
    throw new ServiceError('invalid_request', `options: ${both.join(', ')} both allowed and disallowed`);
  }
  return options;
}
