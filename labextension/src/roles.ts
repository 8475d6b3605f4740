/**
 * Role gating and the pure helpers of the access, approvals, environments and VPS views.
 * The host decides (every route checks role and token scope); the panel only hides what
 * the caller cannot use, so nothing it shows answers 403. No DOM here: unit-tested.
 */

import { ApiError } from './errors';
import { formatCommand, IMe, IQuota, ITaskInfo, Role, ROLES, Scope } from './models';

const RANK: Record<Role, number> = { viewer: 1, user: 2, operator: 3, admin: 4 };
const SCOPE_ORDER: Scope[] = ['read', 'submit', 'admin'];

/** Whether `role` includes `min` (viewer < user < operator < admin). */
export function atLeast(role: Role, min: Role): boolean {
  return (RANK[role] ?? 0) >= RANK[min];
}

/** Whether token scopes allow `scope` (`null`: not narrowed; `admin` ⊃ `submit` ⊃ `read`). */
export function hasScope(scopes: Scope[] | null | undefined, scope: Scope): boolean {
  if (scopes === null || scopes === undefined) {
    return true;
  }
  const need = SCOPE_ORDER.indexOf(scope);
  return scopes.some(s => SCOPE_ORDER.indexOf(s) >= need);
}

/**
 * `GET /me` as the panel uses it. A host from before roles answered `{username}` only, and
 * every Jupyter user could do everything there: that is an admin.
 */
export function normalizeMe(raw: Partial<IMe> & { username?: string }): IMe {
  const role = ROLES.includes(raw.role as Role) ? (raw.role as Role) : 'admin';
  return {
    username: String(raw.username ?? ''),
    role,
    groups: Array.isArray(raw.groups) ? raw.groups.map(String) : [],
    scopes: Array.isArray(raw.scopes) ? (raw.scopes.filter(s => SCOPE_ORDER.includes(s)) as Scope[]) : null,
    via: String(raw.via ?? 'jupyter')
  };
}

/** What the panel offers; mirrors the host's `@requires(role, scope)` on each route. */
export interface ICapabilities {
  /** Submit tasks, and control (kill/pause/resume/stop/start) one's own. */
  submit: boolean;
  /** See and control everyone's tasks (operators and admins). */
  allTasks: boolean;
  /** Approve or reject tasks waiting for approval. */
  approve: boolean;
  /** The Environments view: create, exec, commit, delete. */
  environments: boolean;
  /** Create and revoke one's own API tokens. */
  tokens: boolean;
  /** List users and quotas (operators and admins). */
  viewUsers: boolean;
  /** Add and change users, set and delete quotas, change settings. */
  admin: boolean;
  /** The audit log. */
  audit: boolean;
  /** Runner tokens (the Admin view). */
  runnerTokens: boolean;
}

export function capabilities(me: IMe | null): ICapabilities {
  if (!me) {
    // not known yet (or /me failed): offer nothing that needs a role
    return {
      submit: false,
      allTasks: false,
      approve: false,
      environments: false,
      tokens: false,
      viewUsers: false,
      admin: false,
      audit: false,
      runnerTokens: false
    };
  }
  const r = me.role;
  const s = me.scopes;
  return {
    submit: atLeast(r, 'user') && hasScope(s, 'submit'),
    allTasks: atLeast(r, 'operator'),
    approve: atLeast(r, 'operator') && hasScope(s, 'submit'),
    environments: atLeast(r, 'operator') && hasScope(s, 'admin'),
    tokens: hasScope(s, 'admin'),
    viewUsers: atLeast(r, 'operator') && hasScope(s, 'read'),
    admin: r === 'admin' && hasScope(s, 'admin'),
    audit: r === 'admin' && hasScope(s, 'read'),
    runnerTokens: r === 'admin' && hasScope(s, 'admin')
  };
}

/** Whether the caller sees a task's command, env, logs and events. */
export function seesDetails(me: IMe | null, task: ITaskInfo): boolean {
  if (task.redacted) {
    return false;
  }
  return !me || task.owner === me.username || atLeast(me.role, 'operator');
}

/** Whether the caller may kill/pause/resume/stop/start a task. */
export function mayControl(me: IMe | null, task: ITaskInfo): boolean {
  if (!me) {
    return false;
  }
  const caps = capabilities(me);
  return caps.submit && !task.redacted && (task.owner === me.username || caps.allTasks);
}

/** A message for a failed call: 403 and 401 said plainly, never a raw stack. */
export function errorText(error: unknown, what = ''): string {
  const prefix = what ? `${what}: ` : '';
  if (error instanceof ApiError) {
    if (error.status === 403) {
      return `${prefix}not allowed for your role (${error.message})`;
    }
    if (error.status === 401) {
      return `${prefix}not signed in to the cluster (${error.message})`;
    }
    return prefix + error.message;
  }
  return prefix + ((error as Error)?.message ?? String(error));
}

/** Whether a failure is a refusal (403): the view shows a message instead of its content. */
export function isForbidden(error: unknown): boolean {
  return error instanceof ApiError && error.status === 403;
}

// ===== VPS =====

/** `ssh -p PORT root@NODE`, or '' while the VPS has no port. */
export function sshCommand(task: Pick<ITaskInfo, 'ssh_port' | 'node'>, host?: string): string {
  const target = host || task.node;
  if (!task.ssh_port || !target) {
    return '';
  }
  return `ssh -p ${task.ssh_port} root@${target}`;
}

/** Which VPS actions make sense in a status. */
export function vpsActions(task: ITaskInfo): { stop: boolean; start: boolean; snapshot: boolean } {
  const s = task.status;
  const alive = s === 'running' || s === 'paused' || s === 'assigning';
  return {
    stop: task.task_type === 'vps' && (alive || s === 'pending' || s === 'pending_approval') && !task.kill_requested,
    start: task.task_type === 'vps' && s === 'stopped',
    snapshot: task.task_type === 'vps' && (s === 'running' || s === 'paused')
  };
}

// ===== Users, groups, quotas =====

const GROUP_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const SUBJECT_RE = /^(user|group):[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$/;
const USERNAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$/;

/** `"ml, vision ml"` -> `["ml", "vision"]`; throws on a name the host would refuse. */
export function parseGroups(text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(/[\s,]+/)) {
    if (!part) {
      continue;
    }
    if (!GROUP_RE.test(part)) {
      throw new Error(`invalid group name ${JSON.stringify(part)} (letters, digits, '.', '_', '-')`);
    }
    if (!out.includes(part)) {
      out.push(part);
    }
  }
  if (out.length > 32) {
    throw new Error('at most 32 groups');
  }
  return out;
}

export function validUsername(name: string): boolean {
  return USERNAME_RE.test(name);
}

export interface IQuotaForm {
  kind: 'user' | 'group';
  name: string;
  max_gpus: string;
  max_cores: string;
  max_tasks: string;
  max_vps: string;
}

export const QUOTA_LIMITS: (keyof Omit<IQuota, 'subject'>)[] = ['max_gpus', 'max_cores', 'max_tasks', 'max_vps'];

/** The quota form as a `PUT /quotas` body (empty: no limit), or errors per field. */
export function buildQuota(
  form: IQuotaForm
): { quota: IQuota; errors: null } | { quota: null; errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  const subject = `${form.kind}:${form.name.trim()}`;
  if (!SUBJECT_RE.test(subject)) {
    errors.subject = form.name.trim() ? `invalid ${form.kind} name` : `enter a ${form.kind} name`;
  }
  const quota: IQuota = { subject, max_gpus: null, max_cores: null, max_tasks: null, max_vps: null };
  for (const key of QUOTA_LIMITS) {
    const raw = form[key].trim();
    if (raw === '') {
      continue;
    }
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > 1_000_000) {
      errors[key] = 'a whole number (0 or more), or empty for no limit';
    } else {
      quota[key] = n;
    }
  }
  if (Object.keys(errors).length) {
    return { quota: null, errors };
  }
  return { quota, errors: null };
}

/** `user:alice` -> `{kind: 'user', name: 'alice'}`. */
export function splitSubject(subject: string): { kind: 'user' | 'group'; name: string } {
  const i = subject.indexOf(':');
  const kind = subject.slice(0, i) === 'group' ? 'group' : 'user';
  return { kind, name: subject.slice(i + 1) };
}

export function formatLimit(value: number | null | undefined): string {
  return value === null || value === undefined ? 'no limit' : String(value);
}

// ===== API tokens =====

/** Scopes ticked on the form -> the create body's `scopes` (none ticked: not narrowed). */
export function tokenScopes(checked: Scope[]): Scope[] | undefined {
  const picked = SCOPE_ORDER.filter(s => checked.includes(s));
  return picked.length ? picked : undefined;
}

export function formatScopes(scopes: Scope[] | null | undefined): string {
  return scopes && scopes.length ? scopes.join(', ') : 'all (role)';
}

/** A token's state for the list: revoked, expired, or active. */
export function tokenState(t: { revoked?: boolean; expires_at?: number | null }, now = Date.now() / 1000): string {
  if (t.revoked) {
    return 'revoked';
  }
  if (t.expires_at && t.expires_at <= now) {
    return 'expired';
  }
  return 'active';
}

// ===== Audit log =====

/** An audit entry's detail as one short line: `role=operator, groups=[ml]`. */
export function formatDetail(detail: Record<string, unknown> | null | undefined, max = 160): string {
  if (!detail) {
    return '';
  }
  const text = Object.entries(detail)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.join(', ')}]` : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`)
    .join(', ');
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

/**
 * Cursor paging of a newest-first log (`before` = an event ID): the stack of cursors of
 * the pages seen, so "Newer" goes back without the host knowing about it.
 */
export class CursorPager {
  private _stack: (string | null)[] = [null];

  /** The `before` of the page shown. */
  get current(): string | null {
    return this._stack[this._stack.length - 1];
  }

  get page(): number {
    return this._stack.length;
  }

  get hasNewer(): boolean {
    return this._stack.length > 1;
  }

  /** Go to the page after one ending with `lastId`. */
  older(lastId: string): void {
    this._stack.push(lastId);
  }

  newer(): void {
    if (this._stack.length > 1) {
      this._stack.pop();
    }
  }

  reset(): void {
    this._stack = [null];
  }
}

// ===== Environments =====

/** `"  pip install 'numpy<2' "` -> an argv preview line (for the exec box). */
export function argvPreview(argv: string[]): string {
  return JSON.stringify(argv);
}

/** The exec box's line as the argv the host gets (never a shell string), or an error. */
export function execArgv(line: string, split: (line: string) => string[]): { argv: string[]; error: string } {
  try {
    const argv = split(line);
    if (!argv.length) {
      return { argv, error: 'enter a command' };
    }
    if (!argv[0]) {
      return { argv, error: 'the command must not be empty' };
    }
    return { argv, error: '' };
  } catch (e) {
    return { argv: [], error: (e as Error).message };
  }
}

const ENV_NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export function envNameError(name: string): string {
  return ENV_NAME_RE.test(name) ? '' : "lower-case letters, digits, '.', '_', '-' (up to 63)";
}

export function tagError(tag: string): string {
  if (!tag) {
    return '';
  }
  if (tag === 'latest' || !TAG_RE.test(tag)) {
    return "letters, digits, '_', '.', '-' (not 'latest')";
  }
  return '';
}

/** The exec result's header: `exit 0`, `timed out`, … */
export function execSummary(result: { exit_code: number | null; timed_out?: boolean; truncated?: boolean }, argv: string[]): string {
  const state = result.timed_out ? 'timed out' : result.exit_code === null ? 'no exit code' : `exit ${result.exit_code}`;
  return `$ ${formatCommand(argv)} — ${state}${result.truncated ? ' (output truncated)' : ''}`;
}
