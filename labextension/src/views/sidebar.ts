/** The left sidebar: cluster summary, node cards, the user's recent tasks. */

import { Widget } from '@lumino/widgets';

import { h, replaceChildren, button } from '../components/dom';
import { nodeCard } from '../components/nodecard';
import { setBar, setStatusBadge, statusBadge, usageBar } from '../components/widgets';
import { ClusterModel } from '../model';
import { compareIds, formatBytes, ITaskInfo, taskLabel } from '../models';

export interface IPanelActions {
  openTask(id: string): void;
  openTasks(): void;
  openNodes(): void;
  openAdmin(): void;
  openAccess(): void;
  openEnvironments(): void;
  /** The Tasks view filtered to tasks awaiting approval. */
  openApprovals(): void;
  submit(): void;
  /** Open a file of the Jupyter contents (e.g. a notebook job's executed notebook). */
  openPath(path: string): void;
}

export class ClusterSidebar extends Widget {
  constructor(
    readonly model: ClusterModel,
    readonly actions: IPanelActions
  ) {
    super();
    this.id = 'kohakuriver-panel';
    this.addClass('kr-Sidebar');
    this.title.caption = 'KohakuRiver cluster';
    this._live = h('span', { class: 'kr-Live', role: 'status' });
    this._error = h('div', { class: 'kr-Error', role: 'alert', hidden: true });
    this._cores = usageBar('Cores', 0, 1, '–');
    this._mem = usageBar('Mem', 0, 1, '–');
    this._gpus = usageBar('GPUs', 0, 1, '–');
    this._counts = h('div', { class: 'kr-Counts' });
    this._nodes = h('div', { class: 'kr-NodeList' });
    this._tasks = h('ul', { class: 'kr-RecentTasks', 'aria-label': 'recent tasks' });
    this._who = h('div', { class: 'kr-Who kr-Muted', 'data-kr': 'who' });
    this._toolbar = h('div', { class: 'kr-Toolbar', role: 'toolbar', 'aria-label': 'Cluster views' });
    this._approvals = h('div', { class: 'kr-ApprovalsNote', hidden: true });
    replaceChildren(
      this.node,
      h(
        'header',
        { class: 'kr-Sidebar-head' },
        h('h2', null, 'Cluster'),
        this._live
      ),
      this._who,
      this._toolbar,
      this._approvals,
      this._error,
      h('section', { class: 'kr-Summary', 'aria-label': 'cluster summary' }, this._counts, this._cores, this._mem, this._gpus),
      h('h3', null, 'Nodes'),
      this._nodes,
      h('h3', null, 'Recent tasks'),
      this._tasks
    );
    model.summaryChanged.connect(this._renderSummary, this);
    model.nodeChanged.connect((_, name) => this._renderNode(name), this);
    model.taskChanged.connect((_, t) => this._renderTask(t), this);
    model.resynced.connect(() => this._renderTasks(), this);
    model.liveStateChanged.connect(this._renderLive, this);
    model.pollingChanged.connect(this._renderLive, this);
    model.meChanged.connect(this._renderRole, this);
    model.approvalsChanged.connect(this._renderApprovals, this);
    this._renderRole();
    this._renderLive();
    this._renderSummary();
    this._renderNode(null);
    this._renderTasks();
  }

  /** The toolbar and the "signed in as" line follow the caller's role. */
  private _renderRole(): void {
    const me = this.model.me;
    const caps = this.model.caps;
    const a = this.actions;
    replaceChildren(
      this._toolbar,
      caps.submit ? button('Submit…', () => a.submit(), { accent: true, title: 'Submit a task' }) : null,
      button('Tasks', () => a.openTasks(), { title: 'Open the task list' }),
      button('Nodes', () => a.openNodes(), { title: 'Open the node view' }),
      caps.environments ? button('Envs', () => a.openEnvironments(), { title: 'Container environments' }) : null,
      me ? button('Access', () => a.openAccess(), { title: caps.viewUsers ? 'API tokens, users, quotas, settings' : 'Your API tokens' }) : null,
      caps.runnerTokens ? button('Admin', () => a.openAdmin(), { title: 'Runner tokens' }) : null
    );
    this.node.dataset.role = me?.role ?? '';
    replaceChildren(
      this._who,
      me ? ['Signed in as ', h('strong', null, me.username), ` (${me.role})`] : this.model.meError ? h('span', { class: 'kr-Error' }, this.model.meError) : ''
    );
    this._renderApprovals();
  }

  private _renderApprovals(): void {
    const n = this.model.approvalsTotal;
    const show = this.model.caps.approve && n > 0;
    this._approvals.hidden = !show;
    replaceChildren(
      this._approvals,
      show
        ? button(`${n} awaiting approval`, () => this.actions.openApprovals(), { cls: 'kr-ApprovalsButton', title: 'Open the tasks awaiting approval' })
        : null
    );
    if (show) {
      (this._approvals.firstChild as HTMLElement).dataset.kr = 'approvals';
    }
  }

  private _renderLive(): void {
    const state = this.model.liveState;
    const text = state === 'live' ? 'live' : state === 'connecting' ? 'connecting…' : 'polling';
    this._live.textContent = text;
    this._live.dataset.state = state;
    const next = this.model.pollDelay;
    this._live.dataset.pollS = state === 'live' ? '' : String(next);
    this._live.title =
      state === 'live'
        ? 'Live updates over WebSocket'
        : `Live socket down: polling every ${this.model.refreshInterval} s` +
          (next > this.model.refreshInterval ? ` (next in ${next} s: the host did not answer)` : '');
  }

  private _renderSummary(): void {
    const s = this.model.summary;
    this._error.hidden = !this.model.lastError;
    this._error.textContent = this.model.lastError;
    if (!s) {
      return;
    }
    replaceChildren(
      this._counts,
      h('span', { 'data-kr': 'nodes-online' }, `${s.nodes_online}/${s.nodes_total} nodes online`),
      h('span', null, `${s.running} running`),
      h('span', { 'data-kr': 'queued' }, `${s.queued} queued`)
    );
    setBar(this._cores, s.cores_used, s.cores_total, `${s.cores_used}/${s.cores_total}`);
    setBar(this._mem, s.memory_reserved, s.memory_total, `${formatBytes(s.memory_reserved)} / ${formatBytes(s.memory_total)}`);
    setBar(this._gpus, s.gpus_used, s.gpus_total, `${s.gpus_used}/${s.gpus_total}`);
  }

  /** Re-render one node card, or all of them when the node list changed (`null`). */
  private _renderNode(name: string | null): void {
    const opts = { onTask: (id: string) => this.actions.openTask(id) };
    if (name === null) {
      const names = [...this.model.nodes.keys()].sort();
      replaceChildren(
        this._nodes,
        names.length ? names.map(n => nodeCard(this.model.nodes.get(n)!, opts)) : h('p', { class: 'kr-Muted' }, 'No nodes yet: start a runner.')
      );
      return;
    }
    const node = this.model.nodes.get(name);
    const old = this._nodes.querySelector(`[data-node="${CSS.escape(name)}"]`);
    if (node && old) {
      old.replaceWith(nodeCard(node, opts));
    } else {
      this._renderNode(null);
    }
  }

  private _renderTasks(): void {
    const tasks = [...this.model.recent.values()].sort((a, b) => compareIds(b.task_id, a.task_id)).slice(0, 10);
    replaceChildren(
      this._tasks,
      tasks.length ? tasks.map(t => this._taskItem(t)) : h('li', { class: 'kr-Muted' }, 'No tasks yet.')
    );
  }

  private _renderTask(task: ITaskInfo): void {
    const li = this._tasks.querySelector(`[data-task="${task.task_id}"]`) as HTMLElement | null;
    if (li) {
      setStatusBadge(li.querySelector('.kr-Status') as HTMLElement, task.status);
    } else if (this.model.recent.has(task.task_id)) {
      this._renderTasks();
    }
  }

  private _taskItem(t: ITaskInfo): HTMLElement {
    return h(
      'li',
      { 'data-task': t.task_id },
      h(
        'button',
        { type: 'button', class: 'kr-TaskLink', title: `Open task ${t.task_id}`, onclick: () => this.actions.openTask(t.task_id) },
        statusBadge(t.status),
        h('span', { class: 'kr-TaskLink-label' }, taskLabel(t)),
        h('span', { class: 'kr-Muted' }, t.node ?? '')
      )
    );
  }

  private _live: HTMLElement;
  private _who: HTMLElement;
  private _toolbar: HTMLElement;
  private _approvals: HTMLElement;
  private _error: HTMLElement;
  private _cores: HTMLElement;
  private _mem: HTMLElement;
  private _gpus: HTMLElement;
  private _counts: HTMLElement;
  private _nodes: HTMLElement;
  private _tasks: HTMLElement;
}
