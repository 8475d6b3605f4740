/**
 * The panel's shared state: cluster summary, nodes with metric histories, the newest
 * tasks, and the tasks submitted from this browser (for notifications). Fed by the events
 * WebSocket; re-read over REST on (re)connect, and polled with backoff while it is down.
 */

import { ISignal, Signal } from '@lumino/signaling';

import { ClusterApi } from './api';
import { LiveEvents, LiveState } from './live';
import {
  appendSample,
  Backoff,
  compareIds,
  ClusterEvent,
  IClusterSummary,
  IMe,
  INodeInfo,
  INodeMetrics,
  ITaskInfo,
  isFinal,
  isStaleUpdate
} from './models';
import { capabilities, errorText, ICapabilities, normalizeMe } from './roles';

const TRACKED_KEY = 'kohakuriver-lab:tracked-tasks';
export const HISTORY_LIMIT = 120;

export interface IModelOptions {
  api?: ClusterApi;
  /** Seconds between polls while the live socket is down (setting `refreshInterval`). */
  refreshInterval?: number;
  /** Show only this owner's tasks as "recent" (the current user). */
  owner?: string;
}

export class ClusterModel {
  constructor(options: IModelOptions = {}) {
    this.api = options.api ?? new ClusterApi();
    this.refreshInterval = options.refreshInterval ?? 10;
    this.owner = options.owner ?? '';
    this.live = new LiveEvents(this.api);
    this.live.received.connect((_, e) => this._onEvent(e));
    this.live.stateChanged.connect((_, s) => this._onLiveState(s));
    try {
      const raw = window.localStorage.getItem(TRACKED_KEY);
      for (const id of raw ? (JSON.parse(raw) as string[]) : []) {
        this._tracked.add(id);
      }
    } catch {
      // private mode or bad JSON: start empty
    }
  }

  readonly api: ClusterApi;
  readonly live: LiveEvents;
  owner: string;

  /** Who the caller is (`GET /me`, read once at start); null until known. */
  get me(): IMe | null {
    return this._me;
  }

  /** What the caller's role and token scopes allow (nothing while `me` is unknown). */
  get caps(): ICapabilities {
    return this._caps;
  }

  /** Why `/me` failed ('' when it did not). */
  meError = '';

  /** `me` is known (or changed): views show or hide what the role allows. */
  get meChanged(): ISignal<this, IMe | null> {
    return this._meChanged;
  }

  /** Read `/me` (once at start); on failure the panel offers nothing role-bound. */
  async loadMe(): Promise<IMe | null> {
    try {
      this.setMe(normalizeMe(await this.api.me()));
      this.meError = '';
    } catch (error) {
      this.meError = errorText(error, 'who am I');
      this.setMe(null);
    }
    return this._me;
  }

  setMe(me: IMe | null): void {
    this._me = me;
    this._caps = capabilities(me);
    this.owner = me?.username ?? '';
    this._meChanged.emit(me);
    if (this._caps.approve && this._started) {
      void this.refreshApprovals();
    }
  }

  /** Tasks waiting for approval (operators and admins), newest first. */
  readonly approvals = new Map<string, ITaskInfo>();
  /** All tasks waiting (the host's count; the map holds the newest 100). */
  approvalsTotal = 0;

  get approvalsChanged(): ISignal<this, void> {
    return this._approvalsChanged;
  }

  /** Re-read the approval queue (only for those who may approve). */
  async refreshApprovals(): Promise<void> {
    if (!this._caps.approve) {
      return;
    }
    try {
      const page = await this.api.listTasks({ status: ['pending_approval'], limit: 100, count: true });
      this.approvals.clear();
      for (const t of page.tasks) {
        this.approvals.set(t.task_id, t);
      }
      this.approvalsTotal = page.total ?? page.tasks.length;
      this._approvalsChanged.emit();
    } catch {
      // the queue stays as it was; the next resync tries again
    }
  }

  /** Seconds between polls while the live socket is down; a change applies at once. */
  get refreshInterval(): number {
    return this._refreshInterval;
  }
  set refreshInterval(seconds: number) {
    const value = Math.max(1, Number(seconds) || 10);
    if (value === this._refreshInterval) {
      return;
    }
    this._refreshInterval = value;
    if (this._pollTimer) {
      window.clearTimeout(this._pollTimer);
      this._pollTimer = 0;
      this._pollBackoff.reset();
      this._schedulePoll();
    }
    this._pollingChanged.emit();
  }

  /** Seconds until the next poll while the socket is down (0: not polling). */
  get pollDelay(): number {
    return this._pollTimer ? this._pollDelayMs / 1000 : 0;
  }

  /** The polling schedule changed (interval setting, socket up or down). */
  get pollingChanged(): ISignal<this, void> {
    return this._pollingChanged;
  }
  summary: IClusterSummary | null = null;
  readonly nodes = new Map<string, INodeInfo>();
  readonly history = new Map<string, INodeMetrics[]>();
  readonly recent = new Map<string, ITaskInfo>();
  lastError = '';

  get summaryChanged(): ISignal<this, void> {
    return this._summaryChanged;
  }
  /** A node's info or metrics changed (its name), or `null` when the node list changed. */
  get nodeChanged(): ISignal<this, string | null> {
    return this._nodeChanged;
  }
  /** A task's new state (from the socket, an action, or a poll). */
  get taskChanged(): ISignal<this, ITaskInfo> {
    return this._taskChanged;
  }
  /** Recent tasks were re-read; lists should re-read too (the socket was down). */
  get resynced(): ISignal<this, void> {
    return this._resynced;
  }
  /** A task submitted from this browser ended. */
  get trackedFinished(): ISignal<this, ITaskInfo> {
    return this._trackedFinished;
  }
  get liveState(): LiveState {
    return this.live.state;
  }
  get liveStateChanged(): ISignal<LiveEvents, LiveState> {
    return this.live.stateChanged;
  }

  /** Start: read everything once, then open the socket. */
  async start(): Promise<void> {
    if (this._started) {
      return;
    }
    this._started = true;
    this.live.start();
    await Promise.all([this.refresh(), this.refreshApprovals()]);
  }

  dispose(): void {
    this.live.dispose();
    window.clearTimeout(this._pollTimer);
    window.clearTimeout(this._debounce);
  }

  /** Re-read summary, nodes and the newest tasks over REST. */
  async refresh(): Promise<void> {
    try {
      const [summary, nodes, page] = await Promise.all([
        this.api.cluster(),
        this.api.nodes(),
        this.api.listTasks({ limit: 20, owner: this.owner || undefined })
      ]);
      this.lastError = '';
      this.summary = summary;
      this._summaryChanged.emit();
      this._setNodes(nodes);
      this.recent.clear();
      for (const t of page.tasks) {
        this.recent.set(t.task_id, t);
      }
      for (const t of page.tasks) {
        this._checkTracked(t);
      }
      this._resynced.emit();
    } catch (error) {
      this.lastError = (error as Error).message;
      this._summaryChanged.emit();
    }
  }

  /** Remember a task submitted here, to notify when it ends. */
  track(ids: string[]): void {
    for (const id of ids) {
      this._tracked.add(id);
    }
    this._saveTracked();
  }

  isTracked(id: string): boolean {
    return this._tracked.has(id);
  }

  /** Feed a task state learned elsewhere (an action's answer, a detail fetch). */
  noteTask(task: ITaskInfo): void {
    this._applyTask(task);
  }

  /**
   * Run an action on a task and apply its answer, unless the events socket told something
   * about that task while the request was out: every change is published there, so the
   * socket's state is at least as new (a fast node may report `running` before the 202 of
   * `start` or `approve` comes back, and that answer must not roll the screen back).
   */
  async act(taskId: string, request: () => Promise<ITaskInfo>): Promise<ITaskInfo> {
    const before = this._seen.get(taskId) ?? 0;
    const task = await request();
    if ((this._seen.get(taskId) ?? 0) === before) {
      this._applyTask(task);
    }
    return task;
  }

  private _setNodes(nodes: INodeInfo[]): void {
    const names = new Set(nodes.map(n => n.name));
    let listChanged = names.size !== this.nodes.size;
    for (const name of this.nodes.keys()) {
      if (!names.has(name)) {
        this.nodes.delete(name);
        listChanged = true;
      }
    }
    for (const node of nodes) {
      if (!this.nodes.has(node.name)) {
        listChanged = true;
      }
      this.nodes.set(node.name, node);
      if (node.metrics) {
        appendSample(this._historyOf(node.name), node.metrics, HISTORY_LIMIT);
      }
      if (!listChanged) {
        this._nodeChanged.emit(node.name);
      }
    }
    if (listChanged) {
      this._nodeChanged.emit(null);
    }
  }

  private _historyOf(name: string): INodeMetrics[] {
    let h = this.history.get(name);
    if (!h) {
      h = [];
      this.history.set(name, h);
    }
    return h;
  }

  /** Merge a node's full history (from `GET /nodes/{name}`). */
  mergeHistory(name: string, samples: INodeMetrics[]): void {
    const h = this._historyOf(name);
    const merged = new Map<number, INodeMetrics>();
    for (const s of [...samples, ...h]) {
      merged.set(s.at, s);
    }
    const sorted = [...merged.values()].sort((a, b) => a.at - b.at).slice(-HISTORY_LIMIT);
    h.splice(0, h.length, ...sorted);
  }

  private _onEvent(event: ClusterEvent): void {
    switch (event.type) {
      case 'task':
        this._seen.set(event.task.task_id, (this._seen.get(event.task.task_id) ?? 0) + 1);
        if (this._seen.size > 5000) {
          this._seen.delete(this._seen.keys().next().value as string);
        }
        this._applyTask(event.task);
        // Usage and totals move with task states: one debounced re-read for a burst.
        this._scheduleUsageRefresh();
        break;
      case 'node': {
        const node = this.nodes.get(event.name);
        if (node) {
          node.status = event.status;
          this._nodeChanged.emit(event.name);
        }
        this._scheduleUsageRefresh();
        break;
      }
      case 'node_removed':
        // an admin removed it (DELETE /nodes/{name}): gone from every view at once
        this.nodes.delete(event.name);
        this.history.delete(event.name);
        this._nodeChanged.emit(null);
        this._scheduleUsageRefresh();
        break;
      case 'metrics': {
        const node = this.nodes.get(event.name);
        if (node) {
          node.metrics = event.metrics;
          appendSample(this._historyOf(event.name), event.metrics, HISTORY_LIMIT);
          this._nodeChanged.emit(event.name);
        } else {
          this._scheduleUsageRefresh();
        }
        break;
      }
    }
  }

  private _applyTask(task: ITaskInfo): void {
    // A task never leaves a final status: a later non-final snapshot (an action's answer
    // overtaken by the socket's event) is stale and must not undo what the screen shows.
    if (isFinal(task.status)) {
      this._finalIds.set(task.task_id, { status: task.status, task_type: task.task_type });
      if (this._finalIds.size > 5000) {
        this._finalIds.delete(this._finalIds.keys().next().value as string);
      }
    } else if (this._finalIds.has(task.task_id)) {
      if (isStaleUpdate(this._finalIds.get(task.task_id), task)) {
        return;
      }
      this._finalIds.delete(task.task_id); // a stopped VPS started again
    }
    if (!this.owner || task.owner === this.owner) {
      if (this.recent.has(task.task_id) || !this.recent.size || compareIds(task.task_id, this._oldestRecent()) > 0) {
        this.recent.set(task.task_id, task);
        if (this.recent.size > 20) {
          this.recent.delete(this._oldestRecent());
        }
      }
    }
    this._taskChanged.emit(task);
    this._checkTracked(task);
    this._noteApproval(task);
  }

  private _noteApproval(task: ITaskInfo): void {
    if (!this._caps.approve) {
      return;
    }
    const waiting = task.status === 'pending_approval';
    const had = this.approvals.has(task.task_id);
    if (waiting) {
      this.approvals.set(task.task_id, task);
      this.approvalsTotal += had ? 0 : 1;
    } else if (had) {
      this.approvals.delete(task.task_id);
      this.approvalsTotal = Math.max(0, this.approvalsTotal - 1);
    }
    if (waiting || had) {
      this._approvalsChanged.emit();
    }
  }

  private _oldestRecent(): string {
    let oldest = '';
    for (const id of this.recent.keys()) {
      if (!oldest || compareIds(id, oldest) < 0) {
        oldest = id;
      }
    }
    return oldest;
  }

  private _checkTracked(task: ITaskInfo): void {
    if (this._tracked.has(task.task_id) && isFinal(task.status)) {
      this._tracked.delete(task.task_id);
      this._saveTracked();
      this._trackedFinished.emit(task);
    }
  }

  private _saveTracked(): void {
    try {
      window.localStorage.setItem(TRACKED_KEY, JSON.stringify([...this._tracked].slice(-500)));
    } catch {
      // storage full or disabled: notifications for this session only
    }
  }

  private _scheduleUsageRefresh(): void {
    if (this._debounce) {
      return;
    }
    this._debounce = window.setTimeout(async () => {
      this._debounce = 0;
      try {
        const [summary, nodes] = await Promise.all([this.api.cluster(), this.api.nodes()]);
        this.summary = summary;
        this._summaryChanged.emit();
        this._setNodes(nodes);
      } catch {
        // the next event or poll tries again
      }
    }, 500);
  }

  private _onLiveState(state: LiveState): void {
    if (state === 'live') {
      window.clearTimeout(this._pollTimer);
      this._pollTimer = 0;
      this._pollBackoff.reset();
      if (this._wasDown) {
        void this.refresh();
        void this.refreshApprovals();
      }
      this._wasDown = false;
      this._pollingChanged.emit();
    } else if (state === 'down') {
      this._wasDown = true;
      // Reconnect attempts come and go (connecting -> down); the poll schedule keeps running.
      if (!this._pollTimer && !this._polling) {
        this._schedulePoll();
      }
    }
  }

  private _schedulePoll(): void {
    const base = this._refreshInterval * 1000;
    const delay = Math.min(base * 2 ** this._pollBackoff.attempts, base * 8);
    this._pollBackoff.next();
    this._pollDelayMs = delay;
    this._pollingChanged.emit();
    this._pollTimer = window.setTimeout(async () => {
      this._pollTimer = 0;
      if ((this.live.state as string) === 'live') {
        return;
      }
      this._polling = true;
      try {
        await this.refresh();
      } finally {
        this._polling = false;
      }
      if (!this.lastError) {
        this._pollBackoff.reset();
        void this.refreshApprovals();
      }
      if ((this.live.state as string) !== 'live' && !this._pollTimer) {
        this._schedulePoll();
      }
    }, delay);
  }

  private _me: IMe | null = null;
  private _caps: ICapabilities = capabilities(null);
  private _meChanged = new Signal<this, IMe | null>(this);
  private _approvalsChanged = new Signal<this, void>(this);
  private _refreshInterval = 10;
  private _pollDelayMs = 0;
  private _polling = false;
  /** Socket events seen per task (orders an action's answer against them). */
  private _seen = new Map<string, number>();
  private _finalIds = new Map<string, Pick<ITaskInfo, 'status' | 'task_type'>>();
  private _pollingChanged = new Signal<this, void>(this);
  private _started = false;
  private _wasDown = false;
  private _tracked = new Set<string>();
  private _pollTimer = 0;
  private _debounce = 0;
  private _pollBackoff = new Backoff(1000, 60000);
  private _summaryChanged = new Signal<this, void>(this);
  private _nodeChanged = new Signal<this, string | null>(this);
  private _taskChanged = new Signal<this, ITaskInfo>(this);
  private _resynced = new Signal<this, void>(this);
  private _trackedFinished = new Signal<this, ITaskInfo>(this);
}
