/**
 * Wire types of the host API and the pure logic the views share (formatting, the task
 * table's filter/sort/page model, submit-form validation). Nothing here touches the DOM or
 * JupyterLab, so it is unit-tested directly.
 */

// ===== Wire types (kohakuriver_lab/models.py) =====

export type TaskStatus =
  | 'pending_approval'
  | 'rejected'
  | 'pending'
  | 'assigning'
  | 'running'
  | 'paused'
  | 'completed'
  | 'failed'
  | 'killed'
  | 'killed_oom'
  | 'lost'
  | 'stopped';

export const ALL_STATUSES: TaskStatus[] = [
  'pending_approval',
  'rejected',
  'pending',
  'assigning',
  'running',
  'paused',
  'completed',
  'failed',
  'killed',
  'killed_oom',
  'lost',
  'stopped'
];

export const FINAL_STATUSES: ReadonlySet<TaskStatus> = new Set<TaskStatus>([
  'rejected',
  'completed',
  'failed',
  'killed',
  'killed_oom',
  'stopped',
  'lost'
]);

export type TaskType = 'command' | 'vps' | 'notebook';

export interface ITaskInfo {
  task_id: string;
  batch_id?: string | null;
  name?: string | null;
  task_type: TaskType;
  owner: string;
  status: TaskStatus;
  command: string[];
  env?: Record<string, string>;
  workdir?: string | null;
  priority?: number;
  backend?: string | null;
  image?: string | null;
  req_cores: number;
  req_memory?: number | null;
  req_gpus?: number[] | number | null;
  target?: string | null;
  node?: string | null;
  assigned_cores?: number[];
  assigned_gpus?: number[];
  numa?: number | null;
  exit_code?: number | null;
  reason?: string | null;
  kill_requested?: boolean;
  /** Notebook jobs: the executed notebook in the Jupyter contents. */
  output_path?: string | null;
  /** Notebook jobs: cells done of total, and the error that stopped it. */
  progress?: { done: number; total: number; cell: number | null; error: string | null } | null;
  /** VPS: the SSH port on its node (null until it runs). */
  ssh_port?: number | null;
  /** `name:tag` of the environment it runs in. */
  environment?: string | null;
  mounts?: string[];
  /**
   * Someone else's task as a `user`/`viewer` sees it: command, env, workdir, reason,
   * output and SSH port are blanked by the host.
   */
  redacted?: boolean;
  submitted_at: number;
  started_at?: number | null;
  finished_at?: number | null;
}

export interface ITaskPage {
  tasks: ITaskInfo[];
  next_cursor: string | null;
  /** With `count=true`: all tasks matching the filters (not only this page). */
  total?: number | null;
}

export interface ITaskEvent {
  event_id: string;
  task_id: string;
  from_status: TaskStatus | null;
  to_status: TaskStatus;
  actor: string;
  reason?: string | null;
  at: number;
}

export interface IGpuInfo {
  index: number;
  name?: string;
  uuid?: string;
  memory_total?: number;
  numa_node?: number | null;
}

export interface INumaNode {
  id: number;
  cores: number[];
  memory_total?: number;
}

export interface IGpuMetrics {
  index: number;
  utilization?: number | null;
  memory_used?: number | null;
  memory_total?: number | null;
  temperature?: number | null;
  power_watts?: number | null;
}

export interface INodeMetrics {
  at: number;
  cpu_percent: number;
  memory_used: number;
  memory_total: number;
  load_1m?: number | null;
  gpus?: IGpuMetrics[];
}

export interface INodeUsage {
  cores_used: number[];
  gpus_used: Record<string, string>;
  memory_reserved: number;
  active_tasks: number;
}

export interface INodeInfo {
  name: string;
  status: 'online' | 'offline';
  hostname?: string;
  cores: number[];
  numa?: INumaNode[];
  memory_total: number;
  gpus?: IGpuInfo[];
  backends?: string[];
  version?: string;
  last_heartbeat?: number | null;
  usage?: INodeUsage;
  metrics?: INodeMetrics | null;
  history?: INodeMetrics[] | null;
}

export interface IClusterSummary {
  nodes_total: number;
  nodes_online: number;
  cores_total: number;
  cores_used: number;
  memory_total: number;
  memory_reserved: number;
  gpus_total: number;
  gpus_used: number;
  queued: number;
  running: number;
}

export interface IRunnerToken {
  token_id: string;
  name: string;
  node?: string | null;
  created_at: number;
  last_used_at?: number | null;
  revoked?: boolean;
  token?: string | null;
}

// ----- users, tokens, approvals, quotas, audit -----

/** Cluster roles, each including the one before. */
export type Role = 'viewer' | 'user' | 'operator' | 'admin';
export const ROLES: Role[] = ['viewer', 'user', 'operator', 'admin'];

/** What an API token may do within its user's role (`admin` ⊃ `submit` ⊃ `read`). */
export type Scope = 'read' | 'submit' | 'admin';
export const SCOPES: Scope[] = ['read', 'submit', 'admin'];

/** `GET /me`: who the caller is to the cluster. */
export interface IMe {
  username: string;
  role: Role;
  groups: string[];
  /** The API token's scopes; null: not narrowed (a Jupyter login). */
  scopes: Scope[] | null;
  /** `jupyter` or `api-token`. */
  via: string;
}

export interface IUserInfo {
  username: string;
  role: Role;
  active: boolean;
  groups: string[];
  has_password?: boolean;
  created_by: string;
  created_at: number;
  last_seen_at?: number | null;
}

export interface IUserUpdate {
  role?: Role;
  active?: boolean;
  groups?: string[];
}

export interface IApiToken {
  token_id: string;
  username: string;
  name: string;
  scopes?: Scope[] | null;
  created_at: number;
  expires_at?: number | null;
  last_used_at?: number | null;
  revoked?: boolean;
  /** Only in the answer to the create call. */
  token?: string | null;
}

export interface IApiTokenCreate {
  name: string;
  /** Omitted: everything the role may do. */
  scopes?: Scope[];
  /** null: never expires. */
  expires_in_days?: number | null;
}

/** Limits of `user:NAME` or `group:NAME`; null: no limit. */
export interface IQuota {
  subject: string;
  max_gpus: number | null;
  max_cores: number | null;
  max_tasks: number | null;
  max_vps: number | null;
}

export interface IClusterSettings {
  approvals_required: boolean;
}

export interface IAuditEvent {
  event_id: string;
  at: number;
  actor: string;
  action: string;
  target?: string | null;
  detail?: Record<string, unknown> | null;
  address?: string | null;
}

// ----- environments and VPS snapshots -----

export interface IEnvironmentVersion {
  name: string;
  version: number;
  tag: string;
  image: string;
  image_id: string;
  size: number;
  sha256: string;
  created_at: number;
  created_by: string;
}

export interface IEnvironment {
  name: string;
  node: string | null;
  base_image: string;
  /** running, creating, committing, failed or removed. */
  status: string;
  reason?: string | null;
  created_by: string;
  created_at: number;
  versions: IEnvironmentVersion[];
}

export interface IExecResult {
  exit_code: number | null;
  stdout: string;
  stderr: string;
  truncated?: boolean;
  timed_out?: boolean;
}

export interface ISnapshot {
  tag: string;
  image: string;
  created: number;
  size?: number;
}

export interface ILogChunk {
  offset: number;
  next_offset: number;
  data: string;
  eof: boolean;
}

/** A frame of the events WebSocket. */
export type ClusterEvent =
  | { type: 'subscribed' }
  | { type: 'task'; task: ITaskInfo }
  | { type: 'node'; name: string; status: 'online' | 'offline' }
  | { type: 'metrics'; name: string; metrics: INodeMetrics }
  | { type: 'node_removed'; name: string };

// ===== Formatting =====

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Bytes for people: `8.0 GiB`. */
export function formatBytes(size: number | null | undefined): string {
  if (size === null || size === undefined || !isFinite(size)) {
    return '–';
  }
  let value = size;
  for (const unit of UNITS) {
    if (Math.abs(value) < 1024 || unit === 'TiB') {
      return unit === 'B' ? `${Math.round(value)} B` : `${value.toFixed(1)} ${unit}`;
    }
    value /= 1024;
  }
  return `${size} B`;
}

/** A duration in seconds as `1h 02m`, `3m 04s`, `5.2s`. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds) || seconds < 0) {
    return '–';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)}s`;
  }
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (h > 0) {
    return `${h}h ${String(m).padStart(2, '0')}m`;
  }
  if (m > 0) {
    return `${m}m ${String(rest).padStart(2, '0')}s`;
  }
  return `${rest}s`;
}

/** A UNIX time (seconds) as a local `YYYY-MM-DD HH:MM:SS`. */
export function formatTime(at: number | null | undefined): string {
  if (!at) {
    return '–';
  }
  const d = new Date(at * 1000);
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
  );
}

/** A percentage 0..100, clamped, for bars. */
export function percent(used: number, total: number): number {
  if (!total || total <= 0 || !isFinite(used)) {
    return 0;
  }
  return Math.max(0, Math.min(100, (used / total) * 100));
}

/** The argv as a shell-like line for display (quotes arguments that need it). */
export function formatCommand(argv: string[]): string {
  return argv
    .map(a => (a === '' || /[\s"'\\$`]/.test(a) ? `'${a.replace(/'/g, `'\\''`)}'` : a))
    .join(' ');
}

/** Human label of a task: its name, else the first 40 chars of the command. */
export function taskLabel(task: ITaskInfo): string {
  if (task.name) {
    return task.name;
  }
  if (task.redacted && !task.command.length) {
    return `(${task.task_type}, details hidden)`;
  }
  const cmd = formatCommand(task.command);
  return cmd.length > 40 ? cmd.slice(0, 39) + '…' : cmd;
}

/** The GPUs a task asked for, as text. */
export function formatGpuRequest(req: number[] | number | null | undefined): string {
  if (req === null || req === undefined) {
    return '0';
  }
  return Array.isArray(req) ? `[${req.join(',')}]` : String(req);
}

/** Whether a status is final (the task has ended). */
export function isFinal(status: TaskStatus): boolean {
  return FINAL_STATUSES.has(status);
}

/**
 * Whether `next` is an older snapshot than `known`: a task never leaves a final status, so
 * a non-final state after a final one is stale (e.g. a kill's 202 answer that arrives after
 * the socket already pushed `killed`). The one way out is a `stopped` VPS started again: its
 * new run has `kill_requested` cleared, while late answers of the stopped run still carry it.
 */
export function isStaleUpdate(
  known: Pick<ITaskInfo, 'status' | 'task_type'> | undefined,
  next: ITaskInfo
): boolean {
  if (!known || !isFinal(known.status) || isFinal(next.status)) {
    return false;
  }
  return !(known.status === 'stopped' && known.task_type === 'vps' && !next.kill_requested);
}

/** Which actions make sense for a task in a status. */
export function allowedActions(task: ITaskInfo): {
  kill: boolean;
  pause: boolean;
  resume: boolean;
} {
  const s = task.status;
  return {
    kill: !isFinal(s) && !task.kill_requested,
    pause: s === 'running',
    resume: s === 'paused'
  };
}

// ===== Shell-like argv splitting for the submit dialog =====

/**
 * Split a command line into argv the way a POSIX shell does for quoting only (no
 * expansion): `python -c 'print(1)'` -> `["python", "-c", "print(1)"]`.
 * Throws on an unterminated quote.
 */
export function splitArgs(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote === "'") {
      if (c === "'") {
        quote = null;
      } else {
        cur += c;
      }
    } else if (quote === '"') {
      if (c === '"') {
        quote = null;
      } else if (c === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) {
        cur += line[++i];
      } else {
        cur += c;
      }
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) {
        out.push(cur);
        cur = '';
        inWord = false;
      }
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) {
    throw new Error('unterminated quote');
  }
  if (inWord) {
    out.push(cur);
  }
  return out;
}

// ===== Server validation errors =====

/**
 * Split a host 400 message (`"cores: must be >= 0; memory: cannot read ..."`) into
 * errors per form field. Parts without a known field go under `''`.
 */
export function parseFieldErrors(message: string, fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of message.split(/;\s*/)) {
    const part = raw.trim();
    if (!part) {
      continue;
    }
    const m = /^([A-Za-z_][\w.[\]]*)\s*:\s*(.*)$/.exec(part);
    let key = '';
    let text = part;
    if (m) {
      const head = m[1].split(/[.[]/)[0];
      if (fields.includes(head)) {
        key = head;
        text = m[2];
      }
    }
    out[key] = out[key] ? `${out[key]}; ${text}` : text;
  }
  return out;
}

// ===== Submit form -> TaskSubmit body =====

export interface ISubmitForm {
  command: string;
  name: string;
  cores: string;
  memory: string;
  gpuMode: 'none' | 'count' | 'pick';
  gpuCount: string;
  /** node -> picked GPU indices (gpuMode 'pick'). */
  gpuPicks: Record<string, number[]>;
  /** `node` or `node:numa`, or '' for any node. */
  target: string;
  env: string;
  image: string;
  priority: string;
  workdir: string;
}

export interface ISubmitBody {
  command: string[];
  name?: string;
  cores: number;
  memory?: string;
  gpus?: number;
  targets?: string[];
  env?: Record<string, string>;
  image?: string;
  priority?: number;
  workdir?: string;
}

/**
 * Turn the submit form into a request body, or field errors found before asking the
 * server (the server validates again and its errors are shown the same way).
 */
export function buildSubmitBody(
  form: ISubmitForm
): { body: ISubmitBody; errors: null } | { body: null; errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  let command: string[] = [];
  try {
    command = splitArgs(form.command);
    if (!command.length) {
      errors.command = 'enter a command';
    }
  } catch (e) {
    errors.command = (e as Error).message;
  }
  const body: ISubmitBody = { command, cores: 1 };
  if (form.name.trim()) {
    body.name = form.name.trim();
  }
  if (form.cores.trim() !== '') {
    const cores = Number(form.cores);
    if (!Number.isInteger(cores) || cores < 0) {
      errors.cores = 'a whole number of cores (0 or more)';
    } else {
      body.cores = cores;
    }
  }
  if (form.memory.trim()) {
    body.memory = form.memory.trim();
  }
  if (form.priority.trim()) {
    const p = Number(form.priority);
    if (!Number.isInteger(p)) {
      errors.priority = 'a whole number';
    } else {
      body.priority = p;
    }
  }
  if (form.workdir.trim()) {
    body.workdir = form.workdir.trim();
  }
  if (form.image.trim()) {
    body.image = form.image.trim();
  }
  const env: Record<string, string> = {};
  for (const line of form.env.split('\n')) {
    if (!line.trim()) {
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) {
      errors.env = `expected NAME=value, got ${JSON.stringify(line.trim())}`;
      break;
    }
    env[line.slice(0, eq).trim()] = line.slice(eq + 1);
  }
  if (Object.keys(env).length) {
    body.env = env;
  }
  if (form.gpuMode === 'count') {
    const n = Number(form.gpuCount);
    if (!Number.isInteger(n) || n < 0) {
      errors.gpus = 'a whole number of GPUs';
    } else if (n > 0) {
      body.gpus = n;
    }
    if (form.target.trim()) {
      body.targets = [form.target.trim()];
    }
  } else if (form.gpuMode === 'pick') {
    const targets = Object.entries(form.gpuPicks)
      .filter(([, idx]) => idx.length)
      .map(([node, idx]) => `${node}::${[...idx].sort((a, b) => a - b).join(',')}`);
    if (!targets.length) {
      errors.gpus = 'pick at least one GPU on the map';
    }
    body.targets = targets;
  } else if (form.target.trim()) {
    body.targets = [form.target.trim()];
  }
  if (Object.keys(errors).length) {
    return { body: null, errors };
  }
  return { body, errors: null };
}

// ===== Task table: filter, sort, page over a keyed set =====

export type SortKey =
  | 'task_id'
  | 'name'
  | 'status'
  | 'owner'
  | 'node'
  | 'task_type'
  | 'submitted_at'
  | 'duration';

export interface ITaskFilter {
  status: Set<TaskStatus>;
  owner: string;
  node: string;
  type: TaskType | '';
  text: string;
}

export function emptyFilter(): ITaskFilter {
  return { status: new Set(), owner: '', node: '', type: '', text: '' };
}

/** Compare two decimal ID strings numerically (IDs exceed 2**53). */
export function compareIds(a: string, b: string): number {
  if (a.length !== b.length) {
    return a.length - b.length;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

function duration(t: ITaskInfo, now: number): number {
  if (!t.started_at) {
    return -1;
  }
  return (t.finished_at ?? now) - t.started_at;
}

function sortValue(t: ITaskInfo, key: SortKey, now: number): string | number {
  switch (key) {
    case 'name':
      return taskLabel(t).toLowerCase();
    case 'status':
      return ALL_STATUSES.indexOf(t.status);
    case 'owner':
      return t.owner;
    case 'node':
      return t.node ?? '';
    case 'task_type':
      return t.task_type;
    case 'submitted_at':
      return t.submitted_at;
    case 'duration':
      return duration(t, now);
    default:
      return 0;
  }
}

/**
 * The Tasks view's model: every loaded task by ID; a filtered, sorted index computed
 * lazily and kept until something changes; pages cut from it. An update that does not
 * move a row (same sort key, still matching) leaves the index alone, so a live status
 * change costs O(1) plus the re-render of one row.
 */
export class TaskTable {
  readonly byId = new Map<string, ITaskInfo>();
  filter: ITaskFilter = emptyFilter();
  sortKey: SortKey = 'task_id';
  sortAsc = false;
  pageSize = 100;
  page = 0;
  private _rows: string[] | null = null;

  get size(): number {
    return this.byId.size;
  }

  /** Add or replace tasks. Returns true when the visible order may have changed. */
  upsert(tasks: ITaskInfo[]): boolean {
    let reorder = false;
    for (const t of tasks) {
      const old = this.byId.get(t.task_id);
      if (isStaleUpdate(old, t)) {
        continue;
      }
      this.byId.set(t.task_id, t);
      if (!old) {
        reorder = true;
      } else if (
        this.matches(old) !== this.matches(t) ||
        (this.sortKey !== 'task_id' &&
          sortValue(old, this.sortKey, 0) !== sortValue(t, this.sortKey, 0))
      ) {
        reorder = true;
      }
    }
    if (reorder) {
      this._rows = null;
    }
    return reorder;
  }

  clear(): void {
    this.byId.clear();
    this._rows = null;
  }

  setFilter(filter: ITaskFilter): void {
    this.filter = filter;
    this.page = 0;
    this._rows = null;
  }

  setSort(key: SortKey, asc?: boolean): void {
    if (asc === undefined) {
      asc = this.sortKey === key ? !this.sortAsc : key === 'name' || key === 'owner';
    }
    this.sortKey = key;
    this.sortAsc = asc;
    this._rows = null;
  }

  matches(t: ITaskInfo): boolean {
    const f = this.filter;
    if (f.status.size && !f.status.has(t.status)) {
      return false;
    }
    if (f.owner && t.owner !== f.owner) {
      return false;
    }
    if (f.node && t.node !== f.node) {
      return false;
    }
    if (f.type && t.task_type !== f.type) {
      return false;
    }
    if (f.text) {
      const needle = f.text.toLowerCase();
      const hay = `${t.task_id} ${t.name ?? ''} ${t.command.join(' ')}`.toLowerCase();
      if (!hay.includes(needle)) {
        return false;
      }
    }
    return true;
  }

  /** IDs of the matching tasks in display order. */
  rows(now = Date.now() / 1000): string[] {
    if (this._rows) {
      return this._rows;
    }
    const list: ITaskInfo[] = [];
    for (const t of this.byId.values()) {
      if (this.matches(t)) {
        list.push(t);
      }
    }
    const key = this.sortKey;
    const dir = this.sortAsc ? 1 : -1;
    if (key === 'task_id') {
      list.sort((a, b) => dir * compareIds(a.task_id, b.task_id));
    } else {
      const values = new Map<string, string | number>();
      for (const t of list) {
        values.set(t.task_id, sortValue(t, key, now));
      }
      list.sort((a, b) => {
        const va = values.get(a.task_id)!;
        const vb = values.get(b.task_id)!;
        const c = va < vb ? -1 : va > vb ? 1 : 0;
        return c !== 0 ? dir * c : -compareIds(a.task_id, b.task_id);
      });
    }
    this._rows = list.map(t => t.task_id);
    return this._rows;
  }

  get pageCount(): number {
    return Math.max(1, Math.ceil(this.rows().length / this.pageSize));
  }

  /** The tasks on the current page (the page is clamped to the range). */
  pageRows(): ITaskInfo[] {
    const rows = this.rows();
    this.page = Math.max(0, Math.min(this.page, this.pageCount - 1));
    const start = this.page * this.pageSize;
    return rows.slice(start, start + this.pageSize).map(id => this.byId.get(id)!);
  }

  /** Distinct values of a column among loaded tasks (for filter menus). */
  distinct(key: 'owner' | 'node'): string[] {
    const seen = new Set<string>();
    for (const t of this.byId.values()) {
      const v = t[key];
      if (v) {
        seen.add(v);
      }
    }
    return [...seen].sort();
  }
}

// ===== Reconnect backoff =====

/** Exponential backoff with a cap: 1, 2, 4, ... `max` seconds (times `base`). */
export class Backoff {
  private _n = 0;
  constructor(
    readonly baseMs = 1000,
    readonly maxMs = 30000
  ) {}

  next(): number {
    const delay = Math.min(this.maxMs, this.baseMs * 2 ** this._n);
    this._n = Math.min(this._n + 1, 20);
    return delay;
  }

  reset(): void {
    this._n = 0;
  }

  get attempts(): number {
    return this._n;
  }
}

// ===== Metrics history (ring per node) =====

/** Keep the last `limit` samples per node, newest last, ignoring repeats of the same time. */
export function appendSample(
  history: INodeMetrics[],
  sample: INodeMetrics,
  limit: number
): INodeMetrics[] {
  if (history.length && history[history.length - 1].at >= sample.at) {
    return history;
  }
  history.push(sample);
  if (history.length > limit) {
    history.splice(0, history.length - limit);
  }
  return history;
}
