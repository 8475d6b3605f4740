/**
 * One task: command, requested and assigned resources, why it is pending, the event
 * timeline, live stdout/stderr (follow socket, download), and kill/pause/resume/resubmit.
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { ApiError } from '../api';
import { button, h, replaceChildren } from '../components/dom';
import { setStatusBadge, statusBadge } from '../components/widgets';
import { ClusterModel } from '../model';
import {
  allowedActions,
  formatBytes,
  formatCommand,
  formatDuration,
  formatGpuRequest,
  formatTime,
  ISubmitBody,
  ITaskEvent,
  ITaskInfo,
  isFinal,
  taskLabel
} from '../models';
import { IPanelActions } from './sidebar';

const MAX_LOG_CHARS = 2_000_000;

export class TaskDetailView extends Widget {
  constructor(
    readonly model: ClusterModel,
    readonly taskId: string,
    readonly actions: IPanelActions
  ) {
    super();
    this.id = `kohakuriver-task-${taskId}`;
    this.addClass('kr-TaskDetail');
    this.title.label = `Task ${taskId.slice(-6)}`;
    this.title.closable = true;
    this._status = statusBadge('pending');
    this._heading = h('h2', null, `Task ${taskId}`);
    this._buttons = h('div', { class: 'kr-Toolbar' });
    this._pending = h('div', { class: 'kr-Pending', role: 'status', hidden: true });
    this._info = h('dl', { class: 'kr-Info' });
    this._events = h('ol', { class: 'kr-Timeline', 'aria-label': 'event timeline' });
    this._log = h('pre', { class: 'kr-Log', tabindex: 0, 'aria-label': 'task output', 'aria-live': 'off' });
    this._follow = h('input', { type: 'checkbox', checked: true, id: `kr-follow-${taskId}` });
    this._logState = h('span', { class: 'kr-Muted' });
    replaceChildren(
      this.node,
      h('header', { class: 'kr-DetailHead' }, this._heading, this._status),
      this._buttons,
      this._pending,
      h('div', { class: 'kr-DetailGrid' }, h('section', null, h('h3', null, 'Task'), this._info), h('section', null, h('h3', null, 'Events'), this._events)),
      h(
        'section',
        { class: 'kr-LogSection' },
        h(
          'div',
          { class: 'kr-Toolbar' },
          h('h3', null, 'Output'),
          h('label', { for: `kr-follow-${taskId}`, class: 'kr-Toggle' }, this._follow, 'follow'),
          button('Download stdout', () => void this._download('stdout'), { title: 'Download stdout' }),
          button('Download stderr', () => void this._download('stderr'), { title: 'Download stderr' }),
          this._logState
        ),
        this._log
      )
    );
    model.taskChanged.connect((_, t) => {
      if (t.task_id === this.taskId) {
        this._setTask(t);
        this._scheduleEvents();
      }
    }, this);
    void this._load();
  }

  task: ITaskInfo | null = null;

  dispose(): void {
    this._socket?.close();
    this._socket = null;
    window.clearTimeout(this._eventsTimer);
    super.dispose();
  }

  private async _load(): Promise<void> {
    try {
      this._setTask(await this.model.api.getTask(this.taskId));
      await this._loadEvents();
      this._openLog();
    } catch (error) {
      replaceChildren(this._info, h('p', { class: 'kr-Error' }, (error as Error).message));
    }
  }

  private _setTask(t: ITaskInfo): void {
    const prev = this.task;
    this.task = t;
    this.title.label = `Task: ${taskLabel(t)}`;
    this.title.caption = `Task ${t.task_id} (${t.status})`;
    this._heading.textContent = taskLabel(t);
    setStatusBadge(this._status, t.status);
    this.node.dataset.status = t.status;
    const acts = allowedActions(t);
    replaceChildren(
      this._buttons,
      button('Kill', () => void this._act('kill'), { disabled: !acts.kill, cls: 'kr-mod-danger', title: 'Kill this task' }),
      button('Pause', () => void this._act('pause'), { disabled: !acts.pause, title: 'Pause (freeze) this task' }),
      button('Resume', () => void this._act('resume'), { disabled: !acts.resume, title: 'Resume this task' }),
      button('Resubmit', () => void this._resubmit(), { title: 'Submit the same task again' }),
      ...(t.output_path
        ? [
            button('Open output notebook', () => this.actions.openPath(t.output_path as string), {
              title: `Open ${t.output_path}`
            })
          ]
        : []),
      button('Refresh', () => void this._load(), { title: 'Reload this task' })
    );
    const waiting = t.status === 'pending' || t.status === 'pending_approval' || t.status === 'assigning';
    this._pending.hidden = !waiting && !(isFinal(t.status) && t.reason);
    this._pending.textContent = waiting
      ? `Why pending: ${t.reason || 'waiting for a node with free resources'}`
      : `Reason: ${t.reason ?? ''}`;
    const dur = t.started_at ? formatDuration((t.finished_at ?? Date.now() / 1000) - t.started_at) : '–';
    const row = (k: string, v: string | Node) => [h('dt', null, k), h('dd', { 'data-field': k }, v)];
    replaceChildren(
      this._info,
      row('ID', t.task_id),
      row('Command', h('code', null, formatCommand(t.command))),
      row('Type', t.task_type),
      row('Owner', t.owner),
      row('Requested', `${t.req_cores} cores · ${t.req_memory ? formatBytes(t.req_memory) : 'no memory limit'} · GPUs ${formatGpuRequest(t.req_gpus)}${t.target ? ' · target ' + t.target : ''}`),
      row('Node', t.node ?? '–'),
      row('Cores', t.assigned_cores?.length ? t.assigned_cores.join(',') : '–'),
      row('GPUs', t.assigned_gpus?.length ? t.assigned_gpus.join(',') : '–'),
      row('NUMA', t.numa === null || t.numa === undefined ? '–' : String(t.numa)),
      row('Backend', [t.backend ?? 'default', t.image ? ` · image ${t.image}` : ''].join('')),
      row('Priority', String(t.priority ?? 0)),
      row('Submitted', formatTime(t.submitted_at)),
      row('Started', formatTime(t.started_at)),
      row('Finished', formatTime(t.finished_at)),
      row('Duration', dur),
      row('Exit code', t.exit_code === null || t.exit_code === undefined ? '–' : String(t.exit_code)),
      t.env && Object.keys(t.env).length ? row('Environment', Object.entries(t.env).map(([k, v]) => `${k}=${v}`).join(' ')) : null,
      t.workdir ? row('Workdir', t.workdir) : null,
      t.progress ? row('Progress', `${t.progress.done} of ${t.progress.total} cells`) : null,
      t.output_path ? row('Output', t.output_path) : null
    );
    if (prev && prev.status !== t.status && !this._socket && !isFinal(prev.status)) {
      this._openLog();
    }
  }

  private _scheduleEvents(): void {
    window.clearTimeout(this._eventsTimer);
    this._eventsTimer = window.setTimeout(() => void this._loadEvents(), 200);
  }

  private async _loadEvents(): Promise<void> {
    let events: ITaskEvent[];
    try {
      events = await this.model.api.taskEvents(this.taskId);
    } catch {
      return;
    }
    replaceChildren(
      this._events,
      events.map(e =>
        h(
          'li',
          null,
          h('span', { class: 'kr-Muted' }, formatTime(e.at)),
          ' ',
          e.from_status ? statusBadge(e.from_status) : null,
          e.from_status ? ' → ' : null,
          statusBadge(e.to_status),
          ` by ${e.actor}`,
          e.reason ? h('div', { class: 'kr-Muted' }, e.reason) : null
        )
      )
    );
  }

  /** Follow stdout+stderr over the WebSocket from the start; ends with an `end` frame. */
  private _openLog(): void {
    this._socket?.close();
    this._log.textContent = '';
    this._logChars = 0;
    this._logState.textContent = 'connecting…';
    const socket = new WebSocket(this.model.api.wsUrl(`tasks/${this.taskId}/logs/follow`, { stream: 'both' }));
    this._socket = socket;
    socket.onopen = () => {
      this._logState.textContent = 'following';
    };
    socket.onmessage = (msg: MessageEvent) => {
      let frame: any;
      try {
        frame = JSON.parse(String(msg.data));
      } catch {
        return;
      }
      if (frame.type === 'log') {
        this._appendLog(String(frame.data ?? ''), frame.stream === 'stderr');
      } else if (frame.type === 'end') {
        this._logState.textContent = `ended: ${frame.status}${frame.exit_code !== null && frame.exit_code !== undefined ? ` (exit ${frame.exit_code})` : ''}`;
        this.node.dataset.logEnded = 'true';
      }
    };
    socket.onclose = () => {
      if (this._socket === socket) {
        this._socket = null;
        if (this.node.dataset.logEnded !== 'true') {
          this._logState.textContent = 'disconnected (refresh to reconnect)';
        }
      }
    };
    socket.onerror = () => undefined;
  }

  private _appendLog(text: string, stderr: boolean): void {
    const span = document.createElement('span');
    if (stderr) {
      span.className = 'kr-Log-stderr';
    }
    span.textContent = text;
    this._log.appendChild(span);
    this._logChars += text.length;
    while (this._logChars > MAX_LOG_CHARS && this._log.firstChild) {
      this._logChars -= this._log.firstChild.textContent?.length ?? 0;
      this._log.removeChild(this._log.firstChild);
    }
    if (this._follow.checked) {
      this._log.scrollTop = this._log.scrollHeight;
    }
  }

  private async _download(stream: 'stdout' | 'stderr'): Promise<void> {
    const parts: string[] = [];
    let offset = 0;
    try {
      for (;;) {
        const chunk = await this.model.api.logs(this.taskId, stream, offset);
        parts.push(chunk.data);
        if (chunk.next_offset === offset || chunk.eof || !chunk.data) {
          break;
        }
        offset = chunk.next_offset;
      }
    } catch (error) {
      void showDialog({ title: 'Download failed', body: (error as Error).message, buttons: [Dialog.okButton()] });
      return;
    }
    const url = URL.createObjectURL(new Blob(parts, { type: 'text/plain' }));
    const a = h('a', { href: url, download: `task-${this.taskId}.${stream}.txt` });
    document.body.appendChild(a);
    a.click();
    a.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  private async _act(action: 'kill' | 'pause' | 'resume'): Promise<void> {
    try {
      const t = await this.model.api.action(this.taskId, action);
      this.model.noteTask(t);
    } catch (error) {
      const msg = error instanceof ApiError ? error.message : String(error);
      void showDialog({ title: `Cannot ${action} the task`, body: msg, buttons: [Dialog.okButton()] });
    }
  }

  private async _resubmit(): Promise<void> {
    const t = this.task;
    if (!t) {
      return;
    }
    const body: ISubmitBody = { command: t.command, cores: t.req_cores };
    if (t.name) body.name = t.name;
    if (t.req_memory) body.memory = String(t.req_memory);
    if (typeof t.req_gpus === 'number') body.gpus = t.req_gpus;
    const targets = t.target ? [t.target] : undefined;
    if (Array.isArray(t.req_gpus) && t.req_gpus.length && t.target && !t.target.includes('::')) {
      (body as any).gpus = t.req_gpus;
    }
    if (targets) body.targets = targets;
    if (t.env && Object.keys(t.env).length) body.env = t.env;
    if (t.workdir) body.workdir = t.workdir;
    if (t.priority) body.priority = t.priority;
    if (t.image) body.image = t.image;
    try {
      const result = await this.model.api.submit(body);
      this.model.track(result.task_ids);
      this.actions.openTask(result.task_ids[0]);
    } catch (error) {
      void showDialog({ title: 'Resubmit failed', body: (error as Error).message, buttons: [Dialog.okButton()] });
    }
  }

  private _socket: WebSocket | null = null;
  private _eventsTimer = 0;
  private _logChars = 0;
  private _status: HTMLElement;
  private _heading: HTMLElement;
  private _buttons: HTMLElement;
  private _pending: HTMLElement;
  private _info: HTMLElement;
  private _events: HTMLElement;
  private _log: HTMLPreElement;
  private _follow: HTMLInputElement;
  private _logState: HTMLElement;
}
