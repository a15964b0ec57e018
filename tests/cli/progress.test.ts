import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { consoleProgress, inStep } from '../../src/progress.js';

/** A stream that says it is a terminal (or not) and keeps what is written to it. */
function fakeStream(tty: boolean, columns = 80): NodeJS.WriteStream & { text(): string; lines(): string[] } {
  let text = '';
  const s = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  }) as unknown as NodeJS.WriteStream & { text(): string; lines(): string[] };
  Object.assign(s, { isTTY: tty, columns, text: () => text, lines: () => text.split('\n') });
  return s;
}

// What a terminal shows of each line once the redraws are done: the text after the last "go to
// column 1" or carriage return, escapes removed.
const shown = (line: string): string =>
  line
    .split(/\r|\x1b\[1G/)
    .at(-1)!
    .replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '');

describe('consoleProgress on a terminal', () => {
  it('keeps a nested step from corrupting the outer one, and restores the outer line after it', () => {
    const stream = fakeStream(true);
    const p = consoleProgress(stream);
    // the shape of issue 15 item 1: an outer step of 27, a nested one of 25, then the outer goes on
    p.start('quantize weights', 27);
    p.tick(25, 'lm_head');
    p.start('gptq', 25);
    for (let i = 1; i <= 25; i++) p.tick(i, `layer ${i}`);
    p.end();
    const afterInner = stream.text();
    p.tick(27, 'wpe.weight');
    p.end();
    // the outer bar is drawn again at once, at its own count
    expect(shown(afterInner.slice(afterInner.lastIndexOf('gptq: ')))).toMatch(/^quantize weights [█░]{24} 25\/27 /);
    const lines = stream.lines().map(shown);
    expect(lines).toEqual(['gptq: 25/25 done in 0.0s', 'quantize weights: 27/27 done in 0.0s', '']);
    expect(stream.text()).not.toMatch(/NaN|-\d/);
  });

  it('never throws and draws only sane counts, whatever it is told', () => {
    const stream = fakeStream(true, 40);
    const p = consoleProgress(stream);
    expect(() => {
      p.tick(5); // no step open
      p.end(); // no step open
      for (const [i, total] of [0, -3, NaN, Infinity, 2.5, 1e12].entries()) {
        p.start(`step ${i}`, total);
        for (const done of [-600, NaN, Infinity, -Infinity, 7, 1e15, 0.5]) p.tick(done, 'x'.repeat(200));
        p.end(undefined, 'stopped');
      }
      p.end();
      p.end('late');
    }).not.toThrow();
    const text = stream.text();
    expect(text).not.toMatch(/NaN|Infinity|-\d/);
    const lines = stream.lines().map(shown).filter((l) => l !== '');
    expect(lines).toHaveLength(6);
    // every bar drawn fits the terminal's 40 columns (the detail was 200 characters)
    const bars = text.split(/\n|\r|\x1b\[1G/).map(shown).filter((l) => /^step/.test(l) && !l.includes(': '));
    expect(bars.length).toBeGreaterThan(6);
    for (const bar of bars) expect(bar.length, bar).toBeLessThanOrEqual(40);
    expect(lines[0]).toMatch(/^step 0: stopped at 0 after/);
    expect(lines[2]).toMatch(/^step 2: stopped at 0 after/);
    expect(lines[4]).toMatch(/^step 4: stopped at 0\/2 after/);
  });

  it('never throws when the stream itself throws', () => {
    const stream = fakeStream(true);
    stream.write = () => {
      throw new Error('EPIPE');
    };
    const p = consoleProgress(stream);
    expect(() => {
      p.start('a', 3);
      p.tick(1);
      p.end();
    }).not.toThrow();
  });
});

describe('inStep', () => {
  it('closes its step as stopped when the work throws, so the outer step gets the next tick', async () => {
    const stream = fakeStream(true);
    const p = consoleProgress(stream);
    p.start('outer', 4);
    await expect(
      inStep(p, 'inner', 10, async (tick) => {
        tick(3);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    p.tick(4);
    p.end();
    expect(stream.lines().map(shown)).toEqual([expect.stringMatching(/^inner: stopped at 3\/10 after \d+\.\ds$/), 'outer: 4/4 done in 0.0s', '']);
  });

  it('ends its step with the summary of the result', async () => {
    const stream = fakeStream(false);
    const r = await inStep(consoleProgress(stream), 'work', 2, async (tick) => (tick(2), 42), (x) => `answer ${x}`);
    expect(r).toBe(42);
    expect(stream.text()).toMatch(/^work: 2\/2 done in \d+\.\ds answer 42\n$/);
  });
});

describe('consoleProgress in a log (not a terminal)', () => {
  it('writes plain lines, nested steps reporting their own counts', () => {
    const stream = fakeStream(false);
    const p = consoleProgress(stream, 0);
    p.start('outer', 3);
    p.tick(1);
    p.start('inner', 2);
    p.tick(2);
    p.end();
    p.tick(3);
    p.end();
    expect(stream.text()).not.toMatch(/\r|\x1b/);
    expect(stream.lines().map((l) => l.replace(/\d+\.\ds/, 'Ts'))).toEqual(['outer: 1/3', 'inner: 2/2', 'inner: 2/2 done in Ts', 'outer: 3/3', 'outer: 3/3 done in Ts', '']);
  });
});
