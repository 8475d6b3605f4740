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
  INodeInfo,
  INodeMetrics,
  ITaskInfo,
  isFinal
} from './models';

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
    await this.refresh();
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
      this._finalIds.add(task.task_id);
      if (this._finalIds.size > 5000) {
        this._finalIds.delete(this._finalIds.values().next().value as string);
      }
    } else if (this._finalIds.has(task.task_id)) {
      return;
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
      }
      if ((this.live.state as string) !== 'live' && !this._pollTimer) {
        this._schedulePoll();
      }
    }, delay);
  }

  private _refreshInterval = 10;
  private _pollDelayMs = 0;
  private _polling = false;
  private _finalIds = new Set<string>();
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
