import { describe, expect, it } from 'vitest';

import {
  appendSample,
  Backoff,
  buildSubmitBody,
  compareIds,
  formatBytes,
  formatCommand,
  formatDuration,
  ISubmitForm,
  isStaleUpdate,
  ITaskInfo,
  parseFieldErrors,
  percent,
  splitArgs,
  TaskTable
} from '../src/models';
import { polylines } from '../src/components/chart';
import { compactRanges } from '../src/views/nodesutil';
import { bytesOf } from '../src/components/nodecard';

function task(i: number, extra: Partial<ITaskInfo> = {}): ITaskInfo {
  return {
    task_id: String(1_000_000_000_000_000_000n + BigInt(i)),
    task_type: 'command',
    owner: i % 2 ? 'alice' : 'bob',
    status: i % 3 === 0 ? 'running' : 'completed',
    command: ['python', '-c', `print(${i})`],
    req_cores: 1,
    node: `node-${i % 5}`,
    submitted_at: 1000 + i,
    started_at: 1000 + i,
    finished_at: 1000 + i + (i % 7),
    ...extra
  };
}

function form(extra: Partial<ISubmitForm> = {}): ISubmitForm {
  return {
    command: 'echo hi',
    name: '',
    cores: '1',
    memory: '',
    gpuMode: 'none',
    gpuCount: '0',
    gpuPicks: {},
    target: '',
    env: '',
    image: '',
    priority: '0',
    workdir: '',
    ...extra
  };
}

describe('formatting', () => {
  it('formats bytes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(8 * 2 ** 30)).toBe('8.0 GiB');
    expect(formatBytes(null)).toBe('–');
  });
  it('formats durations', () => {
    expect(formatDuration(3.21)).toBe('3.2s');
    expect(formatDuration(64)).toBe('1m 04s');
    expect(formatDuration(3720)).toBe('1h 02m');
    expect(formatDuration(-1)).toBe('–');
  });
  it('clamps percentages', () => {
    expect(percent(5, 10)).toBe(50);
    expect(percent(20, 10)).toBe(100);
    expect(percent(1, 0)).toBe(0);
  });
  it('quotes arguments that need it', () => {
    expect(formatCommand(['python', '-c', 'print(1)'])).toBe('python -c print(1)');
    expect(formatCommand(['echo', 'a b', "it's"])).toBe(`echo 'a b' 'it'\\''s'`);
  });
  it('compacts core ranges', () => {
    expect(compactRanges([3, 0, 1, 2, 8, 9, 11])).toBe('0-3,8-9,11');
  });
});

describe('splitArgs', () => {
  it('splits like a shell without expansion', () => {
    expect(splitArgs(`python -c 'print("a b")' x`)).toEqual(['python', '-c', 'print("a b")', 'x']);
    expect(splitArgs('a "b \\" c" d\\ e')).toEqual(['a', 'b " c', 'd e']);
    expect(splitArgs("''")).toEqual(['']);
    expect(splitArgs('   ')).toEqual([]);
  });
  it('rejects an unterminated quote', () => {
    expect(() => splitArgs("echo 'oops")).toThrow(/unterminated/);
  });
});

describe('parseFieldErrors', () => {
  const fields = ['command', 'cores', 'memory', 'gpus', 'targets'];
  it('puts each part at its field', () => {
    const errors = parseFieldErrors(
      "cores: Input should be greater than or equal to 0; memory: cannot read memory size 'lots'",
      fields
    );
    expect(errors.cores).toMatch(/greater/);
    expect(errors.memory).toMatch(/lots/);
  });
  it('maps nested locations to the top field and keeps unknown ones general', () => {
    const errors = parseFieldErrors('gpus.int: bad; no node has 8 GPUs free', fields);
    expect(errors.gpus).toBe('bad');
    expect(errors['']).toBe('no node has 8 GPUs free');
  });
});

describe('buildSubmitBody', () => {
  it('builds a minimal body', () => {
    const r = buildSubmitBody(form({ command: 'python -c "print(1)"' }));
    expect(r.errors).toBeNull();
    expect(r.body).toEqual({ command: ['python', '-c', 'print(1)'], cores: 1, priority: 0 });
  });
  it('collects local errors per field', () => {
    const r = buildSubmitBody(form({ command: '', cores: '-1', env: 'NOEQUALS' }));
    expect(r.body).toBeNull();
    expect(Object.keys(r.errors!).sort()).toEqual(['command', 'cores', 'env']);
  });
  it('turns picked GPUs into node::i,j targets', () => {
    const r = buildSubmitBody(form({ gpuMode: 'pick', gpuPicks: { a: [1, 0], b: [] } }));
    expect(r.body!.targets).toEqual(['a::0,1']);
    expect(r.body!.gpus).toBeUndefined();
    const none = buildSubmitBody(form({ gpuMode: 'pick', gpuPicks: {} }));
    expect(none.errors!.gpus).toMatch(/pick/);
  });
  it('sends a GPU count with a NUMA target, env and memory', () => {
    const r = buildSubmitBody(
      form({ gpuMode: 'count', gpuCount: '2', target: 'n1:0', env: 'A=1\nB=x=y', memory: '8G' })
    );
    expect(r.body).toMatchObject({ gpus: 2, targets: ['n1:0'], env: { A: '1', B: 'x=y' }, memory: '8G' });
  });
});

describe('TaskTable', () => {
  it('sorts by ID numerically, newest first by default', () => {
    expect(compareIds('9', '10')).toBeLessThan(0);
    const t = new TaskTable();
    t.upsert([task(1), task(3), task(2)]);
    expect(t.rows().map(id => id.slice(-1))).toEqual(['3', '2', '1']);
  });
  it('filters, sorts and pages 10,000 tasks quickly', () => {
    const t = new TaskTable();
    const tasks = Array.from({ length: 10000 }, (_, i) => task(i));
    const start = performance.now();
    t.upsert(tasks);
    t.setFilter({ ...t.filter, status: new Set(['running']), owner: 'alice' });
    t.setSort('duration');
    const page = t.pageRows();
    const ms = performance.now() - start;
    expect(page).toHaveLength(100);
    expect(page.every(x => x.status === 'running' && x.owner === 'alice')).toBe(true);
    expect(t.rows()).toHaveLength(tasks.filter(x => x.status === 'running' && x.owner === 'alice').length);
    expect(ms).toBeLessThan(300);
  });
  it('keeps the cached order when an update does not move the row', () => {
    const t = new TaskTable();
    t.upsert([task(3), task(2)]);
    const rows = t.rows();
    expect(t.upsert([{ ...task(3), status: 'paused' }])).toBe(false);
    expect(t.rows()).toBe(rows);
    t.setSort('status');
    t.rows();
    expect(t.upsert([{ ...task(3), status: 'running' }])).toBe(true);
  });
  it('ignores a stale non-final snapshot after a final state', () => {
    const t = new TaskTable();
    t.upsert([{ ...task(1), status: 'killed' }]);
    expect(isStaleUpdate(t.byId.get(task(1).task_id), { ...task(1), status: 'running' })).toBe(true);
    t.upsert([{ ...task(1), status: 'running', kill_requested: true }]);
    expect(t.byId.get(task(1).task_id)!.status).toBe('killed');
    expect(isStaleUpdate(undefined, task(1))).toBe(false);
  });
  it('drops rows that stop matching the filter and clamps the page', () => {
    const t = new TaskTable();
    t.pageSize = 2;
    t.upsert([task(3), task(6), task(9)]);
    t.setFilter({ ...t.filter, status: new Set(['running']) });
    t.page = 1;
    expect(t.pageRows()).toHaveLength(1);
    t.upsert([{ ...task(3), status: 'completed' }]);
    expect(t.rows()).toHaveLength(2);
    expect(t.pageRows()).toHaveLength(2);
    expect(t.page).toBe(0);
  });
  it('searches name, command and ID', () => {
    const t = new TaskTable();
    t.upsert([task(1, { name: 'train-resnet' }), task(2)]);
    t.setFilter({ ...t.filter, text: 'resnet' });
    expect(t.rows()).toHaveLength(1);
    t.setFilter({ ...t.filter, text: 'print(2)' });
    expect(t.rows()).toHaveLength(1);
  });
});

describe('Backoff and samples', () => {
  it('doubles up to the cap and resets', () => {
    const b = new Backoff(100, 500);
    expect([b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 500]);
    b.reset();
    expect(b.next()).toBe(100);
  });
  it('keeps the newest samples in time order', () => {
    const h: any[] = [];
    for (const at of [1, 2, 2, 3, 4]) {
      appendSample(h, { at, cpu_percent: at, memory_used: 0, memory_total: 1 }, 3);
    }
    expect(h.map(s => s.at)).toEqual([2, 3, 4]);
  });
});

describe('chart scaling', () => {
  it('maps time and value into the plot and splits at gaps', () => {
    const segs = polylines(
      [
        { t: 0, v: 0 },
        { t: 5, v: 100 },
        { t: 6, v: null },
        { t: 10, v: 50 }
      ],
      0,
      10
    );
    expect(segs).toHaveLength(2);
    const [x0, y0] = segs[0].split(' ')[0].split(',').map(Number);
    const [x1, y1] = segs[0].split(' ')[1].split(',').map(Number);
    expect(x1).toBeGreaterThan(x0);
    expect(y1).toBeLessThan(y0);
  });
});

describe('bytesOf', () => {
  it('writes the unit once when used and total share it', () => {
    expect(bytesOf(8 * 2 ** 30, 24 * 2 ** 30)).toBe('8.0/24.0 GiB');
    expect(bytesOf(512 * 2 ** 20, 24 * 2 ** 30)).toBe('512.0 MiB/24.0 GiB');
  });
});
