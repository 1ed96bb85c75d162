import type { TurnEventType as Name } from './events.js';

/**
 * The names of a turn's events as values. Kept apart from events.ts so that importing them
 * brings no zod: the web page's bundle does.
 */
export const TurnEventType = {
  status: 'status',
  text: 'text',
  text_delta: 'text_delta',
  tool_use: 'tool_use',
  tool_result: 'tool_result',
  events_dropped: 'events_dropped',
  egress: 'egress',
  result: 'result',
} as const satisfies { readonly [K in Name]: K };
export type TurnEventType = Name;
