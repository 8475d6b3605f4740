import { describe, expect, it } from 'vitest';

import { ApiError } from '../src/errors';
import { IMe, isStaleUpdate, ITaskInfo, splitArgs, taskLabel } from '../src/models';
import {
  atLeast,
  buildQuota,
  capabilities,
  CursorPager,
  envNameError,
  errorText,
  execArgv,
  execSummary,
  formatDetail,
  formatScopes,
  hasScope,
  isForbidden,
  mayControl,
  normalizeMe,
  parseGroups,
  seesDetails,
  splitSubject,
  sshCommand,
  tagError,
  tokenScopes,
  tokenState,
  vpsActions
} from '../src/roles';

function me(role: IMe['role'], extra: Partial<IMe> = {}): IMe {
  return { username: 'alice', role, groups: [], scopes: null, via: 'jupyter', ...extra };
}

function task(extra: Partial<ITaskInfo> = {}): ITaskInfo {
  return {
    task_id: '1000000000000000001',
    task_type: 'command',
    owner: 'alice',
    status: 'running',
    command: ['python', 'train.py'],
    req_cores: 1,
    submitted_at: 1000,
    ...extra
  };
}

describe('roles', () => {
  it('orders roles viewer < user < operator < admin', () => {
    expect(atLeast('admin', 'operator')).toBe(true);
    expect(atLeast('operator', 'operator')).toBe(true);
    expect(atLeast('user', 'operator')).toBe(false);
    expect(atLeast('viewer', 'user')).toBe(false);
  });

  it('treats token scopes as admin ⊃ submit ⊃ read, null as not narrowed', () => {
    expect(hasScope(null, 'admin')).toBe(true);
    expect(hasScope(['read'], 'submit')).toBe(false);
    expect(hasScope(['submit'], 'read')).toBe(true);
    expect(hasScope(['admin'], 'submit')).toBe(true);
    expect(hasScope([], 'read')).toBe(false);
  });

  it('gates each view and button by role (a mocked /me)', () => {
    const viewer = capabilities(me('viewer'));
    expect(viewer.submit).toBe(false);
    expect(viewer.approve || viewer.environments || viewer.admin || viewer.viewUsers).toBe(false);
    expect(viewer.tokens).toBe(true);

    const user = capabilities(me('user'));
    expect(user.submit).toBe(true);
    expect(user.allTasks || user.approve || user.environments || user.admin || user.audit || user.runnerTokens).toBe(false);

    const operator = capabilities(me('operator'));
    expect(operator.approve && operator.environments && operator.viewUsers && operator.allTasks).toBe(true);
    expect(operator.admin || operator.audit || operator.runnerTokens).toBe(false);

    const admin = capabilities(me('admin'));
    expect(Object.values(admin).every(Boolean)).toBe(true);
  });

  it('narrows by the token scopes of an API-token session', () => {
    const readOnlyAdmin = capabilities(me('admin', { scopes: ['read'], via: 'api-token' }));
    expect(readOnlyAdmin.audit).toBe(true);
    expect(readOnlyAdmin.viewUsers).toBe(true);
    expect(readOnlyAdmin.admin || readOnlyAdmin.submit || readOnlyAdmin.approve || readOnlyAdmin.tokens).toBe(false);
    const submitter = capabilities(me('operator', { scopes: ['submit'] }));
    expect(submitter.submit && submitter.approve).toBe(true);
    expect(submitter.environments).toBe(false);
  });

  it('offers nothing role-bound before /me answered', () => {
    expect(Object.values(capabilities(null)).some(Boolean)).toBe(false);
  });

  it('normalizes /me, and reads an old host (username only) as admin', () => {
    expect(normalizeMe({ username: 'bob' })).toEqual({ username: 'bob', role: 'admin', groups: [], scopes: null, via: 'jupyter' });
    const m = normalizeMe({ username: 'carol', role: 'user', groups: ['ml'], scopes: ['read', 'bogus' as any], via: 'api-token' });
    expect(m.role).toBe('user');
    expect(m.scopes).toEqual(['read']);
    expect(normalizeMe({ username: 'x', role: 'superuser' as any }).role).toBe('admin');
  });

  it('lets users see and control only their own tasks; operators all', () => {
    const mine = task();
    const theirs = task({ owner: 'bob' });
    const redacted = task({ owner: 'bob', command: [], env: {}, redacted: true });
    expect(seesDetails(me('user'), mine)).toBe(true);
    expect(seesDetails(me('user'), redacted)).toBe(false);
    expect(seesDetails(me('operator'), theirs)).toBe(true);
    expect(mayControl(me('user'), mine)).toBe(true);
    expect(mayControl(me('user'), theirs)).toBe(false);
    expect(mayControl(me('viewer'), mine)).toBe(false);
    expect(mayControl(me('operator'), theirs)).toBe(true);
    expect(mayControl(me('operator'), redacted)).toBe(false);
    expect(mayControl(null, mine)).toBe(false);
  });

  it('labels a redacted task without showing an empty command', () => {
    expect(taskLabel(task({ owner: 'bob', command: [], redacted: true }))).toBe('(command, details hidden)');
    expect(taskLabel(task({ owner: 'bob', command: [], redacted: true, name: 'sweep' }))).toBe('sweep');
  });

  it('says 403 and 401 plainly', () => {
    expect(errorText(new ApiError(403, 'GET /users needs the operator role (you are user)'), 'users')).toBe(
      'users: not allowed for your role (GET /users needs the operator role (you are user))'
    );
    expect(errorText(new ApiError(401, 'authentication required'))).toMatch(/^not signed in/);
    expect(errorText(new ApiError(409, 'busy'), 'x')).toBe('x: busy');
    expect(errorText(new Error('boom'))).toBe('boom');
    expect(isForbidden(new ApiError(403, 'no'))).toBe(true);
    expect(isForbidden(new ApiError(404, 'no'))).toBe(false);
  });
});

describe('VPS helpers', () => {
  it('builds the ssh command line', () => {
    expect(sshCommand({ ssh_port: 22022, node: 'gpu-01' })).toBe('ssh -p 22022 root@gpu-01');
    expect(sshCommand({ ssh_port: 22022, node: 'gpu-01' }, 'gpu-01.lab')).toBe('ssh -p 22022 root@gpu-01.lab');
    expect(sshCommand({ ssh_port: null, node: 'gpu-01' })).toBe('');
    expect(sshCommand({ ssh_port: 22, node: null })).toBe('');
  });

  it('takes a stopped VPS started again as news, a late answer of its stopped run as stale', () => {
    const stopped = task({ task_type: 'vps', status: 'stopped', kill_requested: true });
    expect(isStaleUpdate(stopped, task({ task_type: 'vps', status: 'pending', kill_requested: false }))).toBe(false);
    expect(isStaleUpdate(stopped, task({ task_type: 'vps', status: 'running', kill_requested: true }))).toBe(true);
    // any other final status stays final
    expect(isStaleUpdate(task({ status: 'killed' }), task({ status: 'pending' }))).toBe(true);
    expect(isStaleUpdate(task({ task_type: 'vps', status: 'killed' }), task({ task_type: 'vps', status: 'pending' }))).toBe(true);
  });

  it('offers stop, start and snapshot by status', () => {
    expect(vpsActions(task({ task_type: 'vps', status: 'running' }))).toEqual({ stop: true, start: false, snapshot: true });
    expect(vpsActions(task({ task_type: 'vps', status: 'stopped' }))).toEqual({ stop: false, start: true, snapshot: false });
    expect(vpsActions(task({ task_type: 'vps', status: 'running', kill_requested: true })).stop).toBe(false);
    expect(vpsActions(task({ task_type: 'command', status: 'running' }))).toEqual({ stop: false, start: false, snapshot: false });
  });
});

describe('users, quotas, tokens, audit', () => {
  it('parses groups and refuses bad names', () => {
    expect(parseGroups(' ml, vision ml ')).toEqual(['ml', 'vision']);
    expect(parseGroups('')).toEqual([]);
    expect(() => parseGroups('ok, bad/name')).toThrow(/invalid group name "bad\/name"/);
  });

  it('builds a quota body (empty: no limit) or field errors', () => {
    const ok = buildQuota({ kind: 'group', name: 'ml', max_gpus: '2', max_cores: '', max_tasks: '10', max_vps: '0' });
    expect(ok.quota).toEqual({ subject: 'group:ml', max_gpus: 2, max_cores: null, max_tasks: 10, max_vps: 0 });
    const bad = buildQuota({ kind: 'user', name: '', max_gpus: '-1', max_cores: '1.5', max_tasks: '', max_vps: '' });
    expect(bad.quota).toBeNull();
    expect(Object.keys(bad.errors!).sort()).toEqual(['max_cores', 'max_gpus', 'subject']);
    expect(splitSubject('group:ml')).toEqual({ kind: 'group', name: 'ml' });
    expect(splitSubject('user:a:b')).toEqual({ kind: 'user', name: 'a:b' });
  });

  it('sends no scopes when none is ticked, in a fixed order otherwise', () => {
    expect(tokenScopes([])).toBeUndefined();
    expect(tokenScopes(['admin', 'read'])).toEqual(['read', 'admin']);
    expect(formatScopes(null)).toBe('all (role)');
    expect(formatScopes(['read'])).toBe('read');
  });

  it('tells a token as active, expired or revoked', () => {
    expect(tokenState({ expires_at: 2000 }, 1000)).toBe('active');
    expect(tokenState({ expires_at: 500 }, 1000)).toBe('expired');
    expect(tokenState({ expires_at: null, revoked: true }, 1000)).toBe('revoked');
  });

  it('formats audit detail on one line', () => {
    expect(formatDetail({ role: 'operator', groups: ['ml', 'cv'] })).toBe('role=operator, groups=[ml, cv]');
    expect(formatDetail(null)).toBe('');
    expect(formatDetail({ x: 'y'.repeat(300) }, 20)).toHaveLength(20);
  });

  it('pages a newest-first log by cursor, back and forth', () => {
    const p = new CursorPager();
    expect(p.current).toBeNull();
    expect(p.hasNewer).toBe(false);
    p.older('900');
    p.older('800');
    expect(p.current).toBe('800');
    expect(p.page).toBe(3);
    p.newer();
    expect(p.current).toBe('900');
    p.reset();
    expect(p.current).toBeNull();
    p.newer();
    expect(p.page).toBe(1);
  });
});

describe('environment exec box', () => {
  it('splits the line into an argv, never a shell string', () => {
    expect(execArgv(`pip install 'numpy<2' "torch==2.*"`, splitArgs)).toEqual({
      argv: ['pip', 'install', 'numpy<2', 'torch==2.*'],
      error: ''
    });
    // shell syntax stays literal: no pipes, redirections, expansion or command substitution
    expect(execArgv('echo $HOME | tee /tmp/x; rm -rf / && `id` > out', splitArgs).argv).toEqual([
      'echo', '$HOME', '|', 'tee', '/tmp/x;', 'rm', '-rf', '/', '&&', '`id`', '>', 'out'
    ]);
    expect(execArgv('bash -c "apt-get update && apt-get install -y git"', splitArgs).argv).toEqual([
      'bash', '-c', 'apt-get update && apt-get install -y git'
    ]);
    expect(execArgv(`a\\ b "c \\"d\\"" ''`, splitArgs).argv).toEqual(['a b', 'c "d"', '']);
  });

  it('refuses an empty line, an empty command and an open quote', () => {
    expect(execArgv('   ', splitArgs).error).toBe('enter a command');
    expect(execArgv("'' -x", splitArgs).error).toBe('the command must not be empty');
    expect(execArgv('echo "open', splitArgs).error).toBe('unterminated quote');
  });

  it('checks environment names and tags as the host does', () => {
    expect(envNameError('torch-2.1_cpu')).toBe('');
    expect(envNameError('Torch')).not.toBe('');
    expect(envNameError('-x')).not.toBe('');
    expect(tagError('')).toBe('');
    expect(tagError('v2')).toBe('');
    expect(tagError('latest')).not.toBe('');
    expect(tagError('a/b')).not.toBe('');
  });

  it('summarizes an exec result', () => {
    expect(execSummary({ exit_code: 0 }, ['pip', 'list'])).toBe('$ pip list — exit 0');
    expect(execSummary({ exit_code: null, timed_out: true, truncated: true }, ['sleep', '9'])).toBe(
      '$ sleep 9 — timed out (output truncated)'
    );
  });
});
