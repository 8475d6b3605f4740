import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { ApiError } from '../src/errors';
import { ClusterModel } from '../src/model';
import { ITaskInfo, ITaskPage } from '../src/models';

/** A ClusterApi stand-in: `/me` answers `me` (or throws it), task lists record their queries. */
function fakeApi(me: unknown, waiting: ITaskInfo[] = []) {
  const queries: unknown[] = [];
  const api = {
    queries,
    async me() {
      if (me instanceof Error) {
        throw me;
      }
      return me;
    },
    async listTasks(query: unknown): Promise<ITaskPage> {
      queries.push(query);
      return { tasks: waiting, next_cursor: null, total: waiting.length };
    }
  };
  return api;
}

function waitingTask(id: string, owner = 'bob'): ITaskInfo {
  return { task_id: id, task_type: 'command', owner, status: 'pending_approval', command: ['x'], req_cores: 1, submitted_at: 1 };
}

describe('ClusterModel and a mocked /me', () => {
  it('a user gets submit but no approvals, and never asks for the queue', async () => {
    const api = fakeApi({ username: 'carol', role: 'user', groups: ['ml'], scopes: null, via: 'jupyter' });
    const model = new ClusterModel({ api: api as any });
    const seen: unknown[] = [];
    model.meChanged.connect((_, m) => seen.push(m));
    await model.loadMe();
    expect(model.owner).toBe('carol');
    expect(model.caps.submit).toBe(true);
    expect(model.caps.approve).toBe(false);
    expect(seen).toHaveLength(1);
    await model.refreshApprovals();
    expect(api.queries).toEqual([]);
  });

  it('an operator loads the approval queue and follows it live', async () => {
    const api = fakeApi({ username: 'olga', role: 'operator', groups: [], scopes: null, via: 'jupyter' }, [waitingTask('11'), waitingTask('12')]);
    const model = new ClusterModel({ api: api as any });
    await model.loadMe();
    await model.refreshApprovals();
    expect(api.queries).toEqual([{ status: ['pending_approval'], limit: 100, count: true }]);
    expect([...model.approvals.keys()].sort()).toEqual(['11', '12']);
    expect(model.approvalsTotal).toBe(2);
    model.noteTask({ ...waitingTask('11'), status: 'pending' }); // approved elsewhere
    model.noteTask(waitingTask('13')); // a new one
    expect([...model.approvals.keys()].sort()).toEqual(['12', '13']);
    expect(model.approvalsTotal).toBe(2);
  });

  it('a refused /me (403) offers nothing and says why', async () => {
    const model = new ClusterModel({ api: fakeApi(new ApiError(403, 'dave is not a member of this cluster (ask an admin)')) as any });
    await model.loadMe();
    expect(model.me).toBeNull();
    expect(Object.values(model.caps).some(Boolean)).toBe(false);
    expect(model.meError).toBe('who am I: not allowed for your role (dave is not a member of this cluster (ask an admin))');
  });
});

describe('ClusterModel.act', () => {
  // a socket event schedules a debounced usage re-read: no timers needed here
  beforeEach(() => vi.stubGlobal('window', { setTimeout: () => 1, clearTimeout: () => undefined }));
  afterEach(() => vi.unstubAllGlobals());

  function running(id: string, extra: Partial<ITaskInfo> = {}): ITaskInfo {
    return { task_id: id, task_type: 'vps', owner: 'a', status: 'running', command: ['sshd'], req_cores: 1, submitted_at: 1, ...extra };
  }

  it('drops an answer overtaken by the events socket, applies one that was not', async () => {
    const model = new ClusterModel({ api: fakeApi({ username: 'a', role: 'user' }) as any });
    const shown: ITaskInfo[] = [];
    model.taskChanged.connect((_, t) => shown.push(t));
    const onSocket = (t: ITaskInfo) => (model as any)._onEvent({ type: 'task', task: t });
    // `start`: the node reports running (with its port) before the 202 `pending` comes back
    await model.act('7', async () => {
      onSocket(running('7', { ssh_port: 2222 }));
      return running('7', { status: 'pending' });
    });
    expect(shown.map(t => t.status)).toEqual(['running']);
    // nothing on the socket meanwhile (or the socket is down): the answer is the news
    await model.act('7', async () => running('7', { status: 'paused' }));
    expect(shown.map(t => t.status)).toEqual(['running', 'paused']);
  });
});
