/**
 * One task: command, requested and assigned resources, why it is pending, the event
 * timeline, live stdout/stderr (follow socket, download), and kill/pause/resume/resubmit.
 * Someone else's task, for a user or viewer, shows what the host tells (status, resources,
 * node) and says its details are hidden: no command, logs, events or controls. Operators
 * approve or reject a waiting task here; a VPS shows its SSH port and command, stop (with
 * or without a snapshot), start, and its snapshots.
 */

import { Clipboard, Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

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
  ISnapshot,
  ISubmitBody,
  ITaskEvent,
  ITaskInfo,
  isFinal,
  taskLabel
} from '../models';
import { errorText, mayControl, seesDetails, sshCommand, vpsActions } from '../roles';
import { approveTask, rejectTask } from './approvals';
import { IPanelActions } from './sidebar';

/** What a user or viewer is told about someone else's task instead of its details. */
export const HIDDEN = 'details hidden (not your task)';

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
    this._redacted = h('div', { class: 'kr-Redacted', role: 'note', 'data-kr': 'redacted', hidden: true }, `This task belongs to someone else: ${HIDDEN}.`);
    this._vps = this._buildVps();
    this._logSection = h(
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
    );
    replaceChildren(
      this.node,
      h('header', { class: 'kr-DetailHead' }, this._heading, this._status),
      this._buttons,
      this._redacted,
      this._pending,
      this._vps.section,
      h('div', { class: 'kr-DetailGrid' }, h('section', null, h('h3', null, 'Task'), this._info), h('section', null, h('h3', null, 'Events'), this._events)),
      this._logSection
    );
    model.taskChanged.connect((_, t) => {
      if (t.task_id === this.taskId) {
        this._setTask(t);
        this._scheduleEvents();
      }
    }, this);
    model.meChanged.connect(() => {
      if (this.task) {
        this._setTask(this.task);
        if (this._details && !this._socket && this.node.dataset.logEnded !== 'true') {
          void this._loadEvents();
          this._openLog();
        }
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
      await this._loadEvents(); // says "details hidden" for someone else's task
      if (this._details) {
        this._openLog();
      }
      if (this.task?.task_type === 'vps' && this._details) {
        void this._loadSnapshots();
      }
    } catch (error) {
      replaceChildren(this._info, h('p', { class: 'kr-Error', role: 'alert' }, errorText(error, `task ${this.taskId}`)));
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
    const me = this.model.me;
    const caps = this.model.caps;
    const details = seesDetails(me, t);
    const control = mayControl(me, t);
    this._details = details;
    this.node.dataset.redacted = String(!details);
    this._redacted.hidden = details;
    this._logSection.hidden = !details;
    if (!details && this._socket) {
      this._socket.close();
      this._socket = null;
    }
    const waitingApproval = t.status === 'pending_approval' && caps.approve;
    replaceChildren(
      this._buttons,
      waitingApproval
        ? [
            button('Approve', () => void approveTask(this.model, t), { accent: true, title: `Approve task ${t.task_id} of ${t.owner}` }),
            button('Reject…', () => void rejectTask(this.model, t), { cls: 'kr-mod-danger', title: `Reject task ${t.task_id} of ${t.owner}` })
          ]
        : null,
      control
        ? [
            button('Kill', () => void this._act('kill'), { disabled: !acts.kill, cls: 'kr-mod-danger', title: 'Kill this task' }),
            button('Pause', () => void this._act('pause'), { disabled: !acts.pause, title: 'Pause (freeze) this task' }),
            button('Resume', () => void this._act('resume'), { disabled: !acts.resume, title: 'Resume this task' })
          ]
        : null,
      details && caps.submit && t.task_type === 'command'
        ? button('Resubmit', () => void this._resubmit(), { title: 'Submit the same task again' })
        : null,
      details && t.output_path
        ? button('Open output notebook', () => this.actions.openPath(t.output_path as string), {
            title: `Open ${t.output_path}`
          })
        : null,
      button('Refresh', () => void this._load(), { title: 'Reload this task' })
    );
    this._renderVps(t, control, details);
    const waiting = t.status === 'pending' || t.status === 'pending_approval' || t.status === 'assigning';
    this._pending.hidden = !details || (!waiting && !(isFinal(t.status) && t.reason));
    this._pending.textContent = waiting
      ? `Why pending: ${t.reason || (t.status === 'pending_approval' ? 'waiting for an operator to approve it' : 'waiting for a node with free resources')}`
      : `Reason: ${t.reason ?? ''}`;
    const hidden = () => h('span', { class: 'kr-Muted kr-Hidden' }, HIDDEN);
    const dur = t.started_at ? formatDuration((t.finished_at ?? Date.now() / 1000) - t.started_at) : '–';
    const row = (k: string, v: string | Node) => [h('dt', null, k), h('dd', { 'data-field': k }, v)];
    replaceChildren(
      this._info,
      row('ID', t.task_id),
      row('Command', details ? h('code', null, t.task_type === 'vps' && !t.command.length ? '(the image\'s SSH daemon)' : formatCommand(t.command)) : hidden()),
      row('Type', t.task_type),
      row('Owner', t.owner),
      row('Requested', `${t.req_cores} cores · ${t.req_memory ? formatBytes(t.req_memory) : 'no memory limit'} · GPUs ${formatGpuRequest(t.req_gpus)}${t.target ? ' · target ' + t.target : ''}`),
      row('Node', t.node ?? '–'),
      row('Cores', t.assigned_cores?.length ? t.assigned_cores.join(',') : '–'),
      row('GPUs', t.assigned_gpus?.length ? t.assigned_gpus.join(',') : '–'),
      row('NUMA', t.numa === null || t.numa === undefined ? '–' : String(t.numa)),
      row('Backend', [t.backend ?? 'default', t.image ? ` · image ${t.image}` : '', t.environment ? ` · environment ${t.environment}` : ''].join('')),
      row('Priority', String(t.priority ?? 0)),
      row('Submitted', formatTime(t.submitted_at)),
      row('Started', formatTime(t.started_at)),
      row('Finished', formatTime(t.finished_at)),
      row('Duration', dur),
      row('Exit code', t.exit_code === null || t.exit_code === undefined ? '–' : String(t.exit_code)),
      !details ? row('Environment', hidden()) : null,
      details && t.env && Object.keys(t.env).length ? row('Environment', Object.entries(t.env).map(([k, v]) => `${k}=${v}`).join(' ')) : null,
      details && t.workdir ? row('Workdir', t.workdir) : null,
      details && t.mounts?.length ? row('Mounts', t.mounts.join(' ')) : null,
      t.progress ? row('Progress', `${t.progress.done} of ${t.progress.total} cells`) : null,
      t.output_path ? row('Output', t.output_path) : null
    );
    // a run starts (or, for a VPS, starts again after a stop): follow its output
    if (details && prev && prev.status !== t.status && !this._socket && (!isFinal(prev.status) || !isFinal(t.status))) {
      this._openLog();
    }
    if (details && t.task_type === 'vps' && prev && prev.status !== t.status && (t.status === 'running' || t.status === 'stopped')) {
      void this._loadSnapshots();
    }
  }

  // ===== VPS =====

  private _buildVps(): {
    section: HTMLElement;
    port: HTMLElement;
    ssh: HTMLElement;
    copy: HTMLButtonElement;
    stop: HTMLButtonElement;
    snapshotFirst: HTMLInputElement;
    stopRow: HTMLElement;
    start: HTMLButtonElement;
    snapNow: HTMLButtonElement;
    snapshots: HTMLElement;
    state: HTMLElement;
  } {
    const id = this.taskId;
    const port = h('dd', { 'data-field': 'SSH port' });
    const ssh = h('code', { class: 'kr-Secret', 'data-kr': 'ssh-command', tabindex: 0, 'aria-label': 'SSH command' });
    const copy = button('Copy', () => Clipboard.copyToSystem(ssh.textContent ?? ''), { title: 'Copy the SSH command' });
    const snapshotFirst = h('input', { type: 'checkbox', id: `kr-vps-snapshot-${id}`, checked: true });
    const stop = button('Stop', () => void this._stopVps(), { cls: 'kr-mod-danger', title: 'Stop this VPS' });
    const stopRow = h('span', { class: 'kr-Toolbar kr-Inline' }, stop, h('label', { class: 'kr-Toggle', for: snapshotFirst.id }, snapshotFirst, 'snapshot first'));
    const start = button('Start', () => void this._startVps(), { accent: true, title: 'Start this VPS again from its latest snapshot' });
    const snapNow = button('Snapshot now', () => void this._snapshotNow(), { title: 'Commit the running container as a snapshot' });
    const state = h('span', { class: 'kr-Muted', role: 'status' });
    const snapshots = h('tbody');
    const section = h(
      'section',
      { class: 'kr-VpsSection', 'aria-label': 'VPS', hidden: true },
      h('h3', null, 'VPS'),
      h('dl', { class: 'kr-VpsInfo' }, h('dt', null, 'SSH port'), port, h('dt', null, 'Log in'), h('dd', { class: 'kr-SshLine' }, ssh, copy)),
      h('div', { class: 'kr-Toolbar' }, stopRow, start, snapNow, button('Refresh snapshots', () => void this._loadSnapshots(), { title: 'Reload the snapshots of this VPS' }), state),
      h(
        'table',
        { class: 'kr-Table kr-SnapshotTable', 'aria-label': 'Snapshots of this VPS' },
        h('thead', null, h('tr', null, ['Tag', 'Image', 'Created', 'Size', ''].map(c => h('th', null, c)))),
        snapshots
      )
    );
    return { section, port, ssh, copy, stop, snapshotFirst, stopRow, start, snapNow, snapshots, state };
  }

  private _renderVps(t: ITaskInfo, control: boolean, details: boolean): void {
    const v = this._vps;
    v.section.hidden = t.task_type !== 'vps';
    if (t.task_type !== 'vps') {
      return;
    }
    const acts = vpsActions(t);
    const host = t.node ? this.model.nodes.get(t.node)?.hostname : undefined;
    const line = sshCommand(t, host || undefined);
    v.port.textContent = !details ? HIDDEN : t.ssh_port ? String(t.ssh_port) : t.status === 'stopped' ? '– (stopped)' : '– (not running yet)';
    v.ssh.textContent = line || (details ? '–' : HIDDEN);
    v.copy.hidden = !line;
    v.stopRow.hidden = !control || !acts.stop;
    v.start.hidden = !control || !acts.start;
    v.snapNow.hidden = !control || !acts.snapshot;
    (v.section.querySelector('.kr-SnapshotTable') as HTMLElement).hidden = !details;
    for (const b of Array.from(v.section.querySelectorAll('button'))) {
      if (b.textContent === 'Refresh snapshots') {
        b.hidden = !details;
      }
    }
  }

  private async _loadSnapshots(): Promise<void> {
    const v = this._vps;
    const t = this.task;
    if (!t || t.task_type !== 'vps' || !this._details) {
      return;
    }
    if (!t.node && !t.target) {
      replaceChildren(v.snapshots, h('tr', null, h('td', { colspan: 5, class: 'kr-Muted' }, 'No snapshots: it has not run yet.')));
      return;
    }
    v.state.textContent = 'asking the node for snapshots…';
    try {
      this._renderSnapshots(await this.model.api.snapshots(this.taskId));
      v.state.textContent = '';
    } catch (error) {
      v.state.textContent = '';
      replaceChildren(v.snapshots, h('tr', null, h('td', { colspan: 5, class: 'kr-Error' }, errorText(error, 'snapshots'))));
    }
  }

  private _renderSnapshots(list: ISnapshot[]): void {
    const t = this.task;
    const control = !!t && mayControl(this.model.me, t);
    const sorted = [...list].sort((a, b) => b.created - a.created);
    replaceChildren(
      this._vps.snapshots,
      sorted.length
        ? sorted.map(s =>
            h(
              'tr',
              { 'data-snapshot': s.tag },
              h('td', null, s.tag),
              h('td', { class: 'kr-Mono' }, s.image),
              h('td', null, formatTime(s.created)),
              h('td', null, s.size ? formatBytes(s.size) : '–'),
              h('td', null, control ? button('Delete', () => void this._deleteSnapshot(s), { cls: 'kr-mod-danger', title: `Delete snapshot ${s.tag}` }) : null)
            )
          )
        : h('tr', null, h('td', { colspan: 5, class: 'kr-Muted' }, 'No snapshots.'))
    );
  }

  private async _stopVps(): Promise<void> {
    const snapshot = this._vps.snapshotFirst.checked;
    if (!snapshot) {
      const result = await showDialog({
        title: 'Stop without a snapshot?',
        body: 'Changes since the last snapshot are lost; Start begins from the latest snapshot (or the image).',
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop' })]
      });
      if (!result.button.accept) {
        return;
      }
    }
    try {
      await this.model.act(this.taskId, () => this.model.api.stopVps(this.taskId, snapshot));
      this._vps.state.textContent = snapshot ? 'stopping (snapshot first)…' : 'stopping…';
    } catch (error) {
      void showDialog({ title: 'Cannot stop the VPS', body: errorText(error), buttons: [Dialog.okButton()] });
    }
  }

  private async _startVps(): Promise<void> {
    try {
      await this.model.act(this.taskId, () => this.model.api.action(this.taskId, 'start'));
      this._vps.state.textContent = 'queued to start again';
    } catch (error) {
      void showDialog({ title: 'Cannot start the VPS', body: errorText(error), buttons: [Dialog.okButton()] });
    }
  }

  private async _snapshotNow(): Promise<void> {
    const v = this._vps;
    v.snapNow.disabled = true;
    v.state.textContent = 'committing a snapshot…';
    try {
      this._renderSnapshots(await this.model.api.createSnapshot(this.taskId));
      v.state.textContent = 'snapshot taken';
    } catch (error) {
      v.state.textContent = '';
      void showDialog({ title: 'Snapshot failed', body: errorText(error), buttons: [Dialog.okButton()] });
    } finally {
      v.snapNow.disabled = false;
    }
  }

  private async _deleteSnapshot(s: ISnapshot): Promise<void> {
    const result = await showDialog({
      title: `Delete snapshot "${s.tag}"?`,
      body: `The image ${s.image} is removed from the node.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      await this.model.api.deleteSnapshot(this.taskId, s.tag);
    } catch (error) {
      void showDialog({ title: 'Cannot delete the snapshot', body: errorText(error), buttons: [Dialog.okButton()] });
    }
    await this._loadSnapshots();
  }

  private _scheduleEvents(): void {
    if (!this._details) {
      return;
    }
    window.clearTimeout(this._eventsTimer);
    this._eventsTimer = window.setTimeout(() => void this._loadEvents(), 200);
  }

  private async _loadEvents(): Promise<void> {
    if (!this._details) {
      replaceChildren(this._events, h('li', { class: 'kr-Muted' }, HIDDEN));
      return;
    }
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
    delete this.node.dataset.logEnded;
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
      void showDialog({ title: 'Download failed', body: errorText(error), buttons: [Dialog.okButton()] });
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
      await this.model.act(this.taskId, () => this.model.api.action(this.taskId, action));
    } catch (error) {
      void showDialog({ title: `Cannot ${action} the task`, body: errorText(error), buttons: [Dialog.okButton()] });
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
      void showDialog({ title: 'Resubmit failed', body: errorText(error), buttons: [Dialog.okButton()] });
    }
  }

  private _socket: WebSocket | null = null;
  private _details = true;
  private _redacted: HTMLElement;
  private _logSection: HTMLElement;
  private _vps: ReturnType<TaskDetailView['_buildVps']>;
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
