import type { TurnView, UsageView } from '../../contract/api.js';
import type { EgressData } from '../../contract/events.js';

const count = new Intl.NumberFormat('en');

const plural = (n: number, one: string, many: string) => `${count.format(n)} ${n === 1 ? one : many}`;

export function formatCost(usd: number): string {
  if (usd === 0) return '$0';
  // Small turns cost fractions of a cent: keep enough digits to tell them apart.
  return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

export function formatDuration(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** Bytes in decimal units, as a download tool shows them: 999 B, 1.2 kB, 34 MB. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < BYTE_UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 || value >= 10 ? Math.round(value) : value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

/** One connection out, as the list under a turn shows it: where to, and what it carried or why it was refused. */
export function egressLine(attempt: EgressData): string {
  const where = `${attempt.host}:${attempt.port}`;
  if (!attempt.allowed) return `${where} · refused: ${attempt.reason ?? 'not allowed'}`;
  const carried = `${formatBytes(attempt.bytesIn)} in, ${formatBytes(attempt.bytesOut)} out`;
  return attempt.reason === undefined ? `${where} · ${carried}` : `${where} · ${carried} · ${attempt.reason}`;
}

/** The turn's tokens, cost, connections out and time on one line. */
export function usageLine(turn: Pick<TurnView, 'usage' | 'costUsd' | 'durationMs' | 'egress'>): string {
  const { usage } = turn;
  const input = usage.inputTokens + usage.cacheCreationInputTokens + usage.cacheReadInputTokens;
  const parts = [
    `${plural(input, 'input token', 'input tokens')}${usage.cacheReadInputTokens > 0 ? ` (${count.format(usage.cacheReadInputTokens)} cached)` : ''}`,
    plural(usage.outputTokens, 'output token', 'output tokens'),
    plural(usage.modelCalls, 'model call', 'model calls'),
    `cost ${formatCost(turn.costUsd)}`,
  ];
  if (turn.egress.connections > 0) {
    parts.push(`${plural(turn.egress.connections, 'connection out', 'connections out')} (${formatBytes(turn.egress.bytes)})`);
  }
  if (turn.durationMs !== null) parts.push(formatDuration(turn.durationMs));
  return parts.join(' · ');
}

const when = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function formatTime(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : when.format(date);
}

/** A finished turn in a few words, for the progress line. */
export function doneLine(turn: Pick<TurnView, 'costUsd' | 'durationMs'>): string {
  return `Done${turn.durationMs === null ? '' : ` in ${formatDuration(turn.durationMs)}`}, cost ${formatCost(turn.costUsd)}.`;
}

/** The user's day so far, against the daily budgets where there are any. */
export function usageToday(usage: UsageView): string {
  const budget = (limit: number | null, format: (n: number) => string) => (limit === null ? '' : ` of ${format(limit)}`);
  return [
    `Today: ${plural(usage.turns, 'turn', 'turns')}`,
    `${count.format(usage.tokens)}${budget(usage.limits.dailyTokens, (n) => count.format(n))} tokens`,
    `${formatCost(usage.costUsd)}${budget(usage.limits.dailyCostUsd, (n) => `$${n.toFixed(2)}`)}`,
    // Most users' turns open no connection out: the day's egress shows once there is some.
    ...(usage.egressBytes > 0 ? [`${formatBytes(usage.egressBytes)}${budget(usage.limits.dailyEgressBytes, formatBytes)} out and in`] : []),
  ].join(' · ');
}
