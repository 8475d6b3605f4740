/**
 * The Tasks view: the queue and history as a sortable, filterable, paginated table.
 * All matching tasks are loaded page by page (500 per request) into a `TaskTable`; only the
 * current page (100 rows) is in the DOM. Live task events update one row in place, or
 * re-cut the page (one animation frame per burst) when the order may have changed.
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { ClusterApi } from '../api';
import { button, h, replaceChildren } from '../components/dom';
import { setStatusBadge, statusBadge } from '../components/widgets';
import { ClusterModel } from '../model';
import {
  ALL_STATUSES,
  allowedActions,
  compareIds,
  emptyFilter,
  formatBytes,
  formatDuration,
  formatGpuRequest,
  formatTime,
  isStaleUpdate,
  ITaskInfo,
  SortKey,
  TaskStatus,
  TaskTable,
  TaskType,
  taskLabel
} from '../models';
import { mayControl } from '../roles';
import { approveTask, rejectTask } from './approvals';
import { IPanelActions } from './sidebar';

/** Waiting tasks listed in the queue above the table (the rest: "Show all"). */
const QUEUE_SHOWN = 8;

const COLUMNS: { key: SortKey | null; label: string }[] = [
  { key: 'task_id', label: 'ID' },
  { key: 'name', label: 'Name / command' },
  { key: 'status', label: 'Status' },
  { key: 'task_type', label: 'Type' },
  { key: 'owner', label: 'Owner' },
  { key: 'node', label: 'Node' },
  { key: null, label: 'GPUs' },
  { key: 'submitted_at', label: 'Submitted' },
  { key: 'duration', label: 'Duration' }
];

const ACTIVE: TaskStatus[] = ['pending_approval', 'pending', 'assigning', 'running', 'paused'];
const MAX_LOADED = 50000;

export class TasksView extends Widget {
  constructor(
    readonly model: ClusterModel,
    readonly actions: IPanelActions
  ) {
    super();
    this.id = 'kohakuriver-tasks';
    this.addClass('kr-TasksView');
    this.title.label = 'Cluster tasks';
    this.api = model.api;
    this._status = h(
      'select',
      { 'aria-label': 'Filter by status', class: 'jp-mod-styled', onchange: () => this._reload() },
      h('option', { value: '' }, 'all statuses'),
      h('option', { value: ACTIVE.join(',') }, 'active'),
      ALL_STATUSES.map(s => h('option', { value: s }, s))
    );
    this._type = h(
      'select',
      { 'aria-label': 'Filter by type', class: 'jp-mod-styled', onchange: () => this._reload() },
      h('option', { value: '' }, 'all types'),
      ['command', 'vps', 'notebook'].map(s => h('option', { value: s }, s))
    );
    this._owner = h('input', { class: 'jp-mod-styled', placeholder: 'owner', 'aria-label': 'Filter by owner', onchange: () => this._reload() });
    this._nodeFilter = h('input', { class: 'jp-mod-styled', placeholder: 'node', 'aria-label': 'Filter by node', onchange: () => this._reload() });
    this._text = h('input', { class: 'jp-mod-styled', type: 'search', placeholder: 'search name, command, ID', 'aria-label': 'Search tasks', oninput: () => this._applyLocalFilter() });
    this._killBtn = button('Kill selected', () => void this._killSelected(), { title: 'Kill the selected tasks', disabled: true, cls: 'kr-mod-danger' });
    this._info = h('span', { class: 'kr-Muted kr-TasksInfo', role: 'status' });
    this._thead = h('thead');
    this._tbody = h('tbody', { onkeydown: (e: KeyboardEvent) => this._onRowKey(e) });
    this._pager = h('nav', { class: 'kr-Pager', 'aria-label': 'pages' });
    this._submitBtn = button('Submit…', () => actions.submit(), { accent: true, title: 'Submit a task' });
    this._queue = h('section', { class: 'kr-ApprovalQueue', 'aria-label': 'Tasks awaiting approval', hidden: true });
    replaceChildren(
      this.node,
      this._queue,
      h(
        'div',
        { class: 'kr-Toolbar kr-TasksToolbar' },
        this._status,
        this._type,
        this._owner,
        this._nodeFilter,
        this._text,
        button('Refresh', () => this._reload(), { title: 'Reload the list' }),
        this._submitBtn,
        this._killBtn,
        this._info
      ),
      h('div', { class: 'kr-TableWrap' }, h('table', { class: 'kr-Table kr-TaskTable', 'aria-label': 'Tasks (arrow keys move between rows, Enter opens, Space selects)' }, this._thead, this._tbody)),
      this._pager
    );
    this._renderHead();
    model.taskChanged.connect((_, t) => this._onTask(t), this);
    model.resynced.connect(() => this._reload(), this);
    model.approvalsChanged.connect(() => this._renderQueue(), this);
    model.meChanged.connect(() => {
      this._gate();
      this._render();
    }, this);
    this._gate();
    this._renderQueue();
    this._reload();
  }

  /** Show only what the role may use: Submit, Kill selected, the approval queue. */
  private _gate(): void {
    const caps = this.model.caps;
    this._submitBtn.hidden = !caps.submit;
    this._killBtn.hidden = !caps.submit;
    this._renderQueue();
  }

  /** The approval queue (operators and admins): the newest waiting tasks with Approve / Reject. */
  private _renderQueue(): void {
    const model = this.model;
    const waiting = [...model.approvals.values()].sort((a, b) => compareIds(b.task_id, a.task_id));
    const show = model.caps.approve && waiting.length > 0;
    this._queue.hidden = !show;
    this.node.dataset.approvals = show ? String(model.approvalsTotal) : '0';
    if (!show) {
      replaceChildren(this._queue);
      return;
    }
    const total = Math.max(model.approvalsTotal, waiting.length);
    replaceChildren(
      this._queue,
      h(
        'div',
        { class: 'kr-Toolbar' },
        h('h3', { 'data-kr': 'approvals-count' }, `${total} task${total === 1 ? '' : 's'} awaiting approval`),
        button('Show all in the table', () => this.setStatusFilter('pending_approval'), { title: 'Filter the table to tasks awaiting approval' })
      ),
      h(
        'ul',
        { class: 'kr-QueueList' },
        waiting.slice(0, QUEUE_SHOWN).map(t =>
          h(
            'li',
            { 'data-task': t.task_id },
            h(
              'button',
              { type: 'button', class: 'kr-TaskLink kr-QueueTask', title: `Open task ${t.task_id}`, onclick: () => this.actions.openTask(t.task_id) },
              h('span', { class: 'kr-TaskLink-label' }, taskLabel(t)),
              h('span', null, t.owner),
              h('span', { class: 'kr-Muted' }, `${t.req_cores} cores · ${t.req_memory ? formatBytes(t.req_memory) : 'no memory limit'} · GPUs ${formatGpuRequest(t.req_gpus)}${t.target ? ' · ' + t.target : ''}`),
              h('span', { class: 'kr-Muted' }, formatTime(t.submitted_at))
            ),
            button('Approve', () => void approveTask(this.model, t), { accent: true, title: `Approve task ${t.task_id} of ${t.owner}` }),
            button('Reject…', () => void rejectTask(this.model, t), { cls: 'kr-mod-danger', title: `Reject task ${t.task_id} of ${t.owner}` })
          )
        )
      ),
      waiting.length > QUEUE_SHOWN ? h('p', { class: 'kr-Muted' }, `and ${total - QUEUE_SHOWN} more`) : null
    );
  }

  readonly api: ClusterApi;
  readonly table = new TaskTable();
  /** Milliseconds from opening (or reload) to the first page on screen. */
  firstRenderMs = -1;

  /** Set filters from outside (restorer, commands). */
  setStatusFilter(value: string): void {
    this._status.value = value;
    this._reload();
  }

  private _serverQuery(): { status?: TaskStatus[]; owner?: string; node?: string; type?: TaskType } {
    const status = this._status.value ? (this._status.value.split(',') as TaskStatus[]) : undefined;
    return {
      status,
      owner: this._owner.value.trim() || undefined,
      node: this._nodeFilter.value.trim() || undefined,
      type: (this._type.value as TaskType) || undefined
    };
  }

  /** All tasks matching the server-side filters (the host's count plus live arrivals). */
  get total(): number | null {
    return this._total;
  }

  private _reload(): void {
    const generation = ++this._generation;
    const started = performance.now();
    this.table.clear();
    this._selected.clear();
    this._total = null;
    this.table.page = 0;
    this._applyLocalFilter(false);
    this._info.textContent = 'loading…';
    const query = this._serverQuery();
    const load = async () => {
      let cursor: string | null = null;
      let first = true;
      do {
        const page = await this.api.listTasks({ ...query, limit: first ? 200 : 500, cursor, count: first });
        if (generation !== this._generation) {
          return;
        }
        if (first && typeof page.total === 'number') {
          this._total = page.total;
        }
        this.table.upsert(page.tasks);
        cursor = page.next_cursor;
        if (first) {
          this._render();
          this.firstRenderMs = performance.now() - started;
          this.node.dataset.firstRenderMs = this.firstRenderMs.toFixed(1);
          first = false;
        } else {
          this._scheduleRender();
        }
      } while (cursor && this.table.size < MAX_LOADED);
      this._more = !!cursor;
      this._loading = false;
      this.node.dataset.loaded = String(this.table.size);
      this._scheduleRender();
    };
    this._loading = true;
    this.node.dataset.loaded = '';
    load().catch(error => {
      if (generation === this._generation) {
        this._loading = false;
        this._info.textContent = `cannot load tasks: ${(error as Error).message}`;
      }
    });
  }

  private _applyLocalFilter(render = true): void {
    const f = emptyFilter();
    f.text = this._text.value.trim();
    // status/owner/node/type are applied by the server; keep them for live updates too
    const q = this._serverQuery();
    f.status = new Set(q.status ?? []);
    f.owner = q.owner ?? '';
    f.node = q.node ?? '';
    f.type = q.type ?? '';
    this.table.setFilter(f);
    if (render) {
      this._render();
    }
  }

  private _onTask(task: ITaskInfo): void {
    const old = this.table.byId.get(task.task_id);
    if (!old && !this.table.matches(task)) {
      return;
    }
    if (isStaleUpdate(old, task)) {
      return;
    }
    if (this._total !== null) {
      // the server-side filters only (the search text is local): what `total` counts
      const text = this.table.filter.text;
      this.table.filter.text = '';
      this._total += Number(this.table.matches(task)) - Number(!!old && this.table.matches(old));
      this.table.filter.text = text;
      this._total = Math.max(0, this._total);
    }
    const reorder = this.table.upsert([task]);
    const row = this._tbody.querySelector(`tr[data-task="${task.task_id}"]`) as HTMLTableRowElement | null;
    if (row && !reorder) {
      this._fillRow(row, task);
    } else if (reorder) {
      this._scheduleRender();
    }
  }

  private _scheduleRender(): void {
    if (this._frame) {
      return;
    }
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this._render();
    });
  }

  private _renderHead(): void {
    const allBox = h('input', {
      type: 'checkbox',
      'aria-label': 'Select all tasks on this page',
      onchange: (e: Event) => {
        const on = (e.target as HTMLInputElement).checked;
        for (const t of this.table.pageRows()) {
          if (on && this._mayKill(t)) {
            this._selected.add(t.task_id);
          } else {
            this._selected.delete(t.task_id);
          }
        }
        this._render();
      }
    });
    this._allBox = allBox;
    replaceChildren(
      this._thead,
      h(
        'tr',
        null,
        h('th', { class: 'kr-Check' }, allBox),
        COLUMNS.map(col => {
          if (!col.key) {
            return h('th', null, col.label);
          }
          const key = col.key;
          const active = this.table.sortKey === key;
          return h(
            'th',
            { 'aria-sort': active ? (this.table.sortAsc ? 'ascending' : 'descending') : 'none' },
            h(
              'button',
              {
                type: 'button',
                class: 'kr-SortButton',
                'data-sort': key,
                onclick: () => {
                  this.table.setSort(key);
                  this._renderHead();
                  this._render();
                }
              },
              col.label,
              active ? (this.table.sortAsc ? ' ▲' : ' ▼') : ''
            )
          );
        })
      )
    );
  }

  /** Pages of the current filters: from the host's total while rows are still loading. */
  private _pageCount(): number {
    const t = this.table;
    if (this._total !== null && !t.filter.text) {
      return Math.max(t.pageCount, Math.ceil(this._total / t.pageSize) || 1);
    }
    return t.pageCount;
  }

  private _render(): void {
    // A page past the loaded rows waits for them (the pager counts from the host's total).
    const waiting = this._loading && this.table.page >= this.table.pageCount;
    const rows = waiting ? [] : this.table.pageRows();
    const active = document.activeElement as HTMLElement | null;
    const refocus = active && this._tbody.contains(active) ? active.closest('tr')?.dataset.task ?? '' : null;
    const frag = document.createDocumentFragment();
    for (const t of rows) {
      frag.appendChild(this._row(t));
    }
    this._tbody.textContent = '';
    this._tbody.appendChild(frag);
    if (waiting) {
      this._tbody.appendChild(h('tr', null, h('td', { colspan: COLUMNS.length + 1, class: 'kr-Muted' }, `Loading page ${this.table.page + 1}…`)));
    } else if (!rows.length && !this._loading) {
      this._tbody.appendChild(h('tr', null, h('td', { colspan: COLUMNS.length + 1, class: 'kr-Muted' }, 'No tasks match.')));
    }
    // one tab stop for the whole table (roving tabindex); arrows move between rows
    const current =
      (this._tbody.querySelector(`tr[data-task="${refocus || this._current}"]`) as HTMLTableRowElement | null) ??
      (this._tbody.querySelector('tr.kr-TaskRow') as HTMLTableRowElement | null);
    if (current) {
      current.tabIndex = 0;
      if (refocus !== null) {
        current.focus({ preventScroll: true });
      }
    }
    this._allBox.checked = rows.length > 0 && rows.every(t => this._selected.has(t.task_id));
    this._renderPager();
    this._killBtn.disabled = this._selected.size === 0;
    this._killBtn.textContent = this._selected.size ? `Kill selected (${this._selected.size})` : 'Kill selected';
    const shown = this.table.rows().length;
    const total = this._total;
    this.node.dataset.total = total === null ? '' : String(total);
    let text: string;
    if (this.table.filter.text) {
      text = `${shown.toLocaleString()} of ${(total ?? this.table.size).toLocaleString()} tasks match`;
    } else {
      text = `${(total ?? shown).toLocaleString()} tasks`;
    }
    if (this._loading) {
      text += total !== null ? ` (loaded ${this.table.size.toLocaleString()}…)` : ' (loading…)';
    } else if (this._more) {
      text += ` (first ${MAX_LOADED.toLocaleString()} loaded)`;
    }
    this._info.textContent = text;
  }

  /** Keyboard in the table: arrows/Home/End move, PageUp/PageDown turn pages, Enter opens, Space selects. */
  private _onRowKey(e: KeyboardEvent): void {
    const row = (e.target as HTMLElement).closest('tr.kr-TaskRow') as HTMLTableRowElement | null;
    if (!row || e.altKey || e.ctrlKey || e.metaKey) {
      return;
    }
    const rows = Array.from(this._tbody.querySelectorAll('tr.kr-TaskRow')) as HTMLTableRowElement[];
    const i = rows.indexOf(row);
    let target: HTMLTableRowElement | undefined;
    switch (e.key) {
      case 'ArrowDown':
        target = rows[Math.min(i + 1, rows.length - 1)];
        break;
      case 'ArrowUp':
        target = rows[Math.max(i - 1, 0)];
        break;
      case 'Home':
        target = rows[0];
        break;
      case 'End':
        target = rows[rows.length - 1];
        break;
      case 'PageDown':
      case 'PageUp': {
        const page = this.table.page + (e.key === 'PageDown' ? 1 : -1);
        if (page >= 0 && page < this._pageCount()) {
          this.table.page = page;
          this._current = '';
          this._render();
        }
        (this._tbody.querySelector('tr.kr-TaskRow') as HTMLElement | null)?.focus();
        e.preventDefault();
        return;
      }
      case 'Enter':
        this.actions.openTask(row.dataset.task!);
        e.preventDefault();
        return;
      case ' ': {
        const box = row.cells[0].firstChild as HTMLInputElement;
        if (!box.disabled) {
          box.checked = !box.checked;
          box.dispatchEvent(new Event('change'));
        }
        e.preventDefault();
        return;
      }
      default:
        return;
    }
    e.preventDefault();
    if (target && target !== row) {
      this._focusRow(target);
    }
  }

  private _focusRow(row: HTMLTableRowElement): void {
    for (const r of Array.from(this._tbody.querySelectorAll('tr[tabindex="0"]'))) {
      (r as HTMLElement).tabIndex = -1;
    }
    row.tabIndex = 0;
    this._current = row.dataset.task ?? '';
    row.focus();
  }

  private _renderPager(): void {
    const t = this.table;
    const go = (page: number) => {
      t.page = page;
      this._render();
      (this._pager.querySelector('[data-current]') as HTMLElement | null)?.focus();
    };
    const pages = this._pageCount();
    const last = pages - 1;
    const size = h(
      'select',
      {
        class: 'jp-mod-styled',
        'aria-label': 'Rows per page',
        onchange: (e: Event) => {
          t.pageSize = Number((e.target as HTMLSelectElement).value);
          t.page = 0;
          this._render();
        }
      },
      [50, 100, 250, 500].map(n => h('option', { value: n, selected: n === t.pageSize }, `${n} / page`))
    );
    replaceChildren(
      this._pager,
      button('«', () => go(0), { title: 'First page', disabled: t.page === 0 }),
      button('‹', () => go(t.page - 1), { title: 'Previous page', disabled: t.page === 0 }),
      h('span', { 'data-current': '', tabindex: -1 }, `page ${t.page + 1} of ${pages.toLocaleString()}`),
      button('›', () => go(t.page + 1), { title: 'Next page', disabled: t.page >= last }),
      button('»', () => go(last), { title: 'Last page', disabled: t.page >= last }),
      size
    );
  }

  private _row(t: ITaskInfo): HTMLTableRowElement {
    const row = h('tr', {
      'data-task': t.task_id,
      tabindex: -1,
      class: 'kr-TaskRow',
      onclick: (e: MouseEvent) => {
        this._current = t.task_id;
        if (!(e.target as HTMLElement).closest('input')) {
          this.actions.openTask(t.task_id);
        }
      }
    });
    const box = h('input', {
      type: 'checkbox',
      tabindex: -1,
      'aria-label': `Select task ${t.task_id}`,
      onchange: (e: Event) => {
        if ((e.target as HTMLInputElement).checked) {
          this._selected.add(t.task_id);
        } else {
          this._selected.delete(t.task_id);
        }
        this._killBtn.disabled = this._selected.size === 0;
        this._killBtn.textContent = this._selected.size ? `Kill selected (${this._selected.size})` : 'Kill selected';
      }
    });
    row.append(
      h('td', { class: 'kr-Check' }, box),
      h('td', { class: 'kr-Mono', title: t.task_id }, t.task_id.slice(-8)),
      h('td', { class: 'kr-TaskName' }),
      h('td', null, statusBadge(t.status)),
      h('td'),
      h('td'),
      h('td'),
      h('td'),
      h('td'),
      h('td')
    );
    this._fillRow(row, t);
    return row;
  }

  private _fillRow(row: HTMLTableRowElement, t: ITaskInfo): void {
    const c = row.cells;
    const box = c[0].firstChild as HTMLInputElement;
    box.checked = this._selected.has(t.task_id);
    box.disabled = !this._mayKill(t);
    c[2].textContent = taskLabel(t);
    c[2].title = t.redacted ? 'details hidden (not your task)' : t.command.join(' ');
    c[2].classList.toggle('kr-mod-hidden', !!t.redacted);
    setStatusBadge(c[3].firstChild as HTMLElement, t.status);
    c[4].textContent = t.task_type;
    c[5].textContent = t.owner;
    c[6].textContent = t.node ?? '–';
    c[7].textContent = t.assigned_gpus?.length ? t.assigned_gpus.join(',') : formatGpuRequest(t.req_gpus);
    c[8].textContent = formatTime(t.submitted_at);
    c[9].textContent = t.started_at ? formatDuration((t.finished_at ?? Date.now() / 1000) - t.started_at) : '–';
  }

  /** Whether this caller may select the task to kill it (own tasks; operators: all). */
  private _mayKill(t: ITaskInfo): boolean {
    return allowedActions(t).kill && mayControl(this.model.me, t);
  }

  private async _killSelected(): Promise<void> {
    const ids = [...this._selected];
    if (!ids.length) {
      return;
    }
    const result = await showDialog({
      title: `Kill ${ids.length} task${ids.length > 1 ? 's' : ''}?`,
      body: 'Queued tasks end at once; running ones when their runner confirms.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Kill' })]
    });
    if (!result.button.accept) {
      return;
    }
    const failures: string[] = [];
    const queue = [...ids];
    const worker = async () => {
      for (let id = queue.shift(); id; id = queue.shift()) {
        try {
          await this.model.act(id, () => this.api.action(id, 'kill'));
          this._selected.delete(id);
        } catch (error) {
          failures.push(`${id}: ${(error as Error).message}`);
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    this._render();
    if (failures.length) {
      void showDialog({ title: 'Some tasks were not killed', body: failures.join('\n'), buttons: [Dialog.okButton()] });
    }
  }

  private _generation = 0;
  private _total: number | null = null;
  private _current = '';
  private _loading = false;
  private _more = false;
  private _frame = 0;
  private _selected = new Set<string>();
  private _status: HTMLSelectElement;
  private _type: HTMLSelectElement;
  private _owner: HTMLInputElement;
  private _nodeFilter: HTMLInputElement;
  private _text: HTMLInputElement;
  private _killBtn: HTMLButtonElement;
  private _submitBtn: HTMLButtonElement;
  private _queue: HTMLElement;
  private _info: HTMLElement;
  private _thead: HTMLTableSectionElement;
  private _tbody: HTMLTableSectionElement;
  private _pager: HTMLElement;
  private _allBox!: HTMLInputElement;
}
