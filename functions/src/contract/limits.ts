import { z } from 'zod';

/**
 * The fair-use limits by the names clients see: `details.limit` of a 429, and a turn's
 * `stoppedBy` when a daily budget ended it.
 */
export const LimitName = z.enum([
  'running_turns',
  'turns_per_minute',
  'running_sandboxes',
  'sandbox_starts_per_minute',
  'daily_tokens',
  'daily_cost',
  'open_requests',
  'file_changes',
  'file_changes_per_minute',
]);
export type LimitName = z.infer<typeof LimitName>;
