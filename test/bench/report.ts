/** The benchmark's output format, shared by its parts so that every section lines up the same. */

const LABEL_WIDTH = 18;

/** One indented result line: a label column, then the value. */
export const line = (label: string, value: string): void => console.log(`  ${label.padEnd(LABEL_WIDTH)}${value}`);

/** Milliseconds, rounded and right-aligned to a column. */
export const ms = (n: number): string => `${Math.round(n)} ms`.padStart(9);
