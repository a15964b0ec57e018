/**
 * Progress of long work. On a terminal: one line redrawn in place with a bar and an ETA; in a
 * log (CI, pipes): a plain line every few seconds. Silent when disabled.
 */
export interface Progress {
  start(label: string, total: number): void;
  tick(done: number, detail?: string): void;
  end(detail?: string): void;
}

export const silentProgress: Progress = { start() {}, tick() {}, end() {} };

export function consoleProgress(stream: NodeJS.WriteStream = process.stderr, intervalMs = 5000): Progress {
  let label = '';
  let total = 0;
  let started = 0;
  let lastPrint = 0;
  const tty = stream.isTTY === true;
  const eta = (done: number): string => {
    if (done <= 0) return '';
    const s = ((Date.now() - started) / done) * (total - done) / 1000;
    return s < 60 ? `${s.toFixed(0)}s` : `${Math.floor(s / 60)}m${Math.round(s % 60)}s`;
  };
  return {
    start(l, t) {
      label = l;
      total = t;
      started = Date.now();
      // on a terminal draw at once; in a log, the first line comes after one interval
      lastPrint = tty ? 0 : started;
    },
    tick(done, detail = '') {
      const now = Date.now();
      if (tty) {
        if (now - lastPrint < 100 && done < total) return;
        const width = 24;
        const filled = total > 0 ? Math.round((done / total) * width) : 0;
        const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
        stream.write(`\r${label} ${bar} ${done}/${total} ETA ${eta(done)} ${detail}\x1b[K`);
      } else if (now - lastPrint >= intervalMs) {
        stream.write(`${label}: ${done}/${total} (ETA ${eta(done)}) ${detail}\n`);
      } else {
        return;
      }
      lastPrint = now;
    },
    end(detail = '') {
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      stream.write(`${tty ? '\r' : ''}${label}: ${total}/${total} done in ${secs}s ${detail}${tty ? '\x1b[K' : ''}\n`);
    },
  };
}
