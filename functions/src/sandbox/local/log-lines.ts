/**
 * Passes a sandbox's output to the service log line by line, within a budget per sandbox: a
 * sandbox that prints without end must not flood the log or grow the service's memory. Past the
 * budget lines are counted, not kept, and one last line says how many were dropped.
 */

export interface LogBudget {
  lines: number;
  bytes: number;
  /** Longer lines are cut here; so is a line that never ends. */
  lineBytes: number;
}

export const SANDBOX_LOG_BUDGET: LogBudget = { lines: 1000, bytes: 256 * 1024, lineBytes: 4096 };

export interface CappedLog {
  forward(stream: NodeJS.ReadableStream): Promise<void>;
  /** Says how much was dropped, once every stream has ended. */
  finish(): void;
}

export function cappedLog(sink: (line: string) => void, budget: LogBudget = SANDBOX_LOG_BUDGET): CappedLog {
  let lines = 0;
  let bytes = 0;
  let droppedLines = 0;
  let droppedBytes = 0;
  const emit = (line: string) => {
    if (line.trim() === '') return;
    if (lines < budget.lines && bytes + line.length <= budget.bytes) {
      lines++;
      bytes += line.length;
      sink(line);
    } else {
      droppedLines++;
      droppedBytes += line.length;
    }
  };
  return {
    forward: (stream) =>
      new Promise((resolve) => {
        let pending = '';
        // The rest of a line already cut at lineBytes is skipped up to its newline.
        let skipping = false;
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => {
          let rest = chunk;
          for (;;) {
            const newline = rest.indexOf('\n');
            if (!skipping) pending += newline === -1 ? rest : rest.slice(0, newline);
            if (pending.length > budget.lineBytes) {
              emit(`${pending.slice(0, budget.lineBytes)} [line cut]`);
              pending = '';
              skipping = true;
            }
            if (newline === -1) return;
            if (!skipping) emit(pending);
            pending = '';
            skipping = false;
            rest = rest.slice(newline + 1);
          }
        });
        stream.once('end', () => {
          emit(pending);
          resolve();
        });
        stream.once('error', () => resolve());
      }),
    finish: () => {
      if (droppedLines > 0) sink(`dropped ${droppedLines} more line${droppedLines === 1 ? '' : 's'} (${droppedBytes} bytes) over the log budget`);
    },
  };
}
