/**
 * Environments (operators and admins): container environments built on a docker node.
 * Create one from a base image, run commands in it (the line is split into an argv here and
 * sent as a list: no shell on either side), commit it as a new version (optional tag), and
 * delete it, with or without its stored versions.
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { button, h, replaceChildren } from '../components/dom';
import { ClusterModel } from '../model';
import { formatBytes, formatTime, IEnvironment, IEnvironmentVersion, splitArgs } from '../models';
import { argvPreview, envNameError, errorText, execArgv, execSummary, tagError } from '../roles';

export class EnvironmentsView extends Widget {
  constructor(readonly model: ClusterModel) {
    super();
    this.id = 'kohakuriver-environments';
    this.addClass('kr-EnvironmentsView');
    this.title.label = 'Cluster environments';
    this._name = h('input', { class: 'jp-mod-styled', id: 'kr-env-name', placeholder: 'name (e.g. torch-2)', 'aria-label': 'Environment name', autocomplete: 'off' });
    this._image = h('input', { class: 'jp-mod-styled', id: 'kr-env-image', placeholder: 'base image (e.g. python:3.12)', 'aria-label': 'Base image', autocomplete: 'off' });
    this._node = h('select', { class: 'jp-mod-styled', id: 'kr-env-node', 'aria-label': 'Build on node' });
    this._error = h('div', { class: 'kr-Error', role: 'alert', hidden: true });
    this._status = h('span', { class: 'kr-Muted', role: 'status' });
    this._list = h('div', { class: 'kr-EnvList' });
    this._createBtn = h('button', { type: 'submit', class: 'jp-Button jp-mod-styled jp-mod-accept kr-Button' }, 'Create');
    this._form = h(
      'form',
      {
        class: 'kr-Toolbar',
        'aria-label': 'Create an environment',
        onsubmit: (e: Event) => {
          e.preventDefault();
          void this._create();
        }
      },
      this._name,
      this._image,
      this._node,
      this._createBtn,
      this._status
    );
    replaceChildren(
      this.node,
      h('div', { class: 'kr-Toolbar' }, h('h2', null, 'Environments'), button('Refresh', () => void this.reload(), { title: 'Reload the environments' })),
      h('p', { class: 'kr-Muted' }, 'A container on a docker node to install into, then commit as a version that tasks run in (environment "name" or "name:tag").'),
      this._form,
      this._error,
      this._list
    );
    model.meChanged.connect(() => this._gate(), this);
    model.nodeChanged.connect((_, name) => {
      if (name === null) {
        this._fillNodes();
      }
    }, this);
    this._fillNodes();
    this._gate();
  }

  /** Re-read the list (the exec outputs of open cards are kept). */
  async reload(): Promise<void> {
    if (!this.model.caps.environments) {
      return;
    }
    try {
      const envs = await this.model.api.environments();
      this._showError('');
      const open = new Map<string, HTMLElement>();
      for (const out of Array.from(this._list.querySelectorAll('.kr-ExecOutput'))) {
        const card = out.closest('[data-env]') as HTMLElement | null;
        if (card && !(out as HTMLElement).hidden) {
          open.set(card.dataset.env!, out as HTMLElement);
        }
      }
      replaceChildren(
        this._list,
        envs.length ? envs.map(e => this._card(e, open.get(e.name))) : h('p', { class: 'kr-Muted' }, 'No environments yet.')
      );
    } catch (error) {
      this._showError(errorText(error, 'environments'));
    }
  }

  private _gate(): void {
    const allowed = this.model.caps.environments;
    this._form.hidden = !allowed;
    if (!this.model.me) {
      return;
    }
    if (!allowed) {
      this._showError(`Environments are managed by operators and admins (you are ${this.model.me.role}).`);
      replaceChildren(this._list);
      return;
    }
    void this.reload();
  }

  private _fillNodes(): void {
    const docker = [...this.model.nodes.values()]
      .filter(n => (n.backends ?? []).includes('docker'))
      .sort((a, b) => a.name.localeCompare(b.name));
    const current = this._node.value;
    replaceChildren(
      this._node,
      h('option', { value: '' }, docker.length ? 'any docker node' : 'any docker node (none online)'),
      docker.map(n => h('option', { value: n.name, selected: n.name === current }, `${n.name}${n.status === 'online' ? '' : ' (offline)'}`))
    );
  }

  private _showError(message: string): void {
    this._error.hidden = !message;
    this._error.textContent = message;
  }

  private async _create(): Promise<void> {
    const name = this._name.value.trim();
    const image = this._image.value.trim();
    const problem = !name ? 'name: enter one' : envNameError(name) ? `name: ${envNameError(name)}` : !image ? 'image: enter a base image' : '';
    for (const input of [this._name, this._image]) {
      input.removeAttribute('aria-invalid');
    }
    if (problem) {
      const input = problem.startsWith('name') ? this._name : this._image;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      this._showError(problem);
      return;
    }
    this._createBtn.disabled = true;
    this._status.textContent = `creating ${name}… (pulling the image may take a while)`;
    try {
      await this.model.api.createEnvironment(name, image, this._node.value || undefined);
      this._name.value = '';
      this._image.value = '';
      this._showError('');
      this._status.textContent = `created ${name}`;
    } catch (error) {
      this._status.textContent = '';
      this._showError(errorText(error, `create ${name}`));
    } finally {
      this._createBtn.disabled = false;
    }
    await this.reload();
  }

  private _card(env: IEnvironment, keepOutput?: HTMLElement): HTMLElement {
    const name = env.name;
    const running = env.status === 'running';
    const error = h('div', { class: 'kr-Error', role: 'alert', hidden: true });
    const output = keepOutput ?? h('div', { class: 'kr-ExecOutput', hidden: true, 'aria-live': 'polite' });
    const line = h('input', {
      class: 'jp-mod-styled kr-ExecLine',
      id: `kr-env-exec-${name}`,
      placeholder: "command, e.g. pip install 'numpy<2'",
      'aria-label': `Command to run in ${name}`,
      'aria-describedby': `kr-env-argv-${name}`,
      autocomplete: 'off',
      spellcheck: 'false',
      disabled: !running
    });
    const preview = h('div', { class: 'kr-Muted kr-Argv', id: `kr-env-argv-${name}`, 'data-kr': 'argv' });
    const runBtn = h('button', { type: 'submit', class: 'jp-Button jp-mod-styled jp-mod-accept kr-Button', disabled: !running }, 'Run');
    line.oninput = () => {
      const { argv, error: problem } = execArgv(line.value, splitArgs);
      preview.textContent = line.value.trim() ? (problem ? problem : `argv: ${argvPreview(argv)}`) : '';
    };
    const tag = h('input', { class: 'jp-mod-styled kr-Narrow', id: `kr-env-tag-${name}`, placeholder: 'tag (optional)', 'aria-label': `Tag of the new version of ${name}`, disabled: !running });
    const commitBtn = button('Commit version', () => void commit(), { title: `Commit ${name} as a new version`, disabled: !running });
    const state = h('span', { class: 'kr-Muted', role: 'status' });
    const busy = (on: boolean, text = '') => {
      for (const el of [line, runBtn, tag, commitBtn]) {
        el.disabled = on || !running;
      }
      state.textContent = text;
    };
    const run = async () => {
      const { argv, error: problem } = execArgv(line.value, splitArgs);
      if (problem) {
        error.hidden = false;
        error.textContent = problem;
        line.focus();
        return;
      }
      error.hidden = true;
      busy(true, 'running…');
      try {
        const result = await this.model.api.execEnvironment(name, argv);
        replaceChildren(
          output,
          h('div', { class: 'kr-ExecHead', 'data-exit': String(result.exit_code) }, execSummary(result, argv)),
          h('pre', { class: 'kr-Log kr-ExecLog', tabindex: 0, 'aria-label': `Output of the command in ${name}` },
            h('span', null, result.stdout),
            result.stderr ? h('span', { class: 'kr-Log-stderr' }, result.stderr) : null
          )
        );
        output.hidden = false;
        busy(false);
      } catch (e) {
        busy(false);
        error.hidden = false;
        error.textContent = errorText(e, 'exec');
      }
      line.focus();
    };
    const commit = async () => {
      const wanted = tag.value.trim();
      const problem = tagError(wanted);
      if (problem) {
        error.hidden = false;
        error.textContent = `tag: ${problem}`;
        tag.focus();
        return;
      }
      error.hidden = true;
      busy(true, 'committing and storing the image… (minutes for a big one)');
      try {
        const v = await this.model.api.commitEnvironment(name, wanted || undefined);
        tag.value = '';
        busy(false, `stored version ${v.version} (${v.tag}, ${formatBytes(v.size)})`);
        await this.reload();
      } catch (e) {
        busy(false);
        error.hidden = false;
        error.textContent = errorText(e, 'commit');
      }
    };
    const remove = async () => {
      const keep = h('input', { type: 'checkbox', id: `kr-env-delversions-${name}` });
      const body = new Widget({
        node: h(
          'div',
          null,
          h('p', null, `The container kohakuriver-env-${name} is removed from ${env.node ?? 'its node'}.`),
          h('label', { class: 'kr-Toggle', for: keep.id }, keep, `also delete its ${env.versions.length} stored version${env.versions.length === 1 ? '' : 's'}`)
        )
      });
      const result = await showDialog({
        title: `Delete environment "${name}"?`,
        body,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
      });
      if (!result.button.accept) {
        return;
      }
      try {
        await this.model.api.deleteEnvironment(name, keep.checked);
      } catch (e) {
        this._showError(errorText(e, `delete ${name}`));
      }
      await this.reload();
    };
    const removeVersion = async (v: IEnvironmentVersion) => {
      const result = await showDialog({
        title: `Delete version ${v.version} (${v.tag}) of "${name}"?`,
        body: 'Nodes keep images they already loaded; new tasks cannot use it.',
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
      });
      if (!result.button.accept) {
        return;
      }
      try {
        await this.model.api.deleteEnvironmentVersion(name, v.version);
      } catch (e) {
        error.hidden = false;
        error.textContent = errorText(e, 'delete version');
      }
      await this.reload();
    };
    const versions = [...env.versions].sort((a, b) => b.version - a.version);
    return h(
      'article',
      { class: `kr-EnvCard kr-mod-${env.status}`, 'data-env': name, 'aria-label': `environment ${name}` },
      h(
        'header',
        { class: 'kr-NodeCard-head' },
        h('h3', null, name),
        h('span', { class: `kr-Status kr-Env-${env.status}`, 'data-status': env.status }, env.status),
        h('span', { class: 'kr-Muted' }, `${env.base_image} · ${env.node ?? 'no node'} · by ${env.created_by} ${formatTime(env.created_at)}`),
        h('span', { class: 'kr-Spacer' }),
        button('Delete', () => void remove(), { cls: 'kr-mod-danger', title: `Delete environment ${name}` })
      ),
      env.reason ? h('div', { class: 'kr-Pending' }, env.reason) : null,
      h(
        'form',
        {
          class: 'kr-Toolbar kr-ExecForm',
          'aria-label': `Run a command in ${name}`,
          onsubmit: (e: Event) => {
            e.preventDefault();
            void run();
          }
        },
        h('label', { for: line.id, class: 'kr-Muted' }, 'exec'),
        line,
        runBtn
      ),
      preview,
      output,
      h(
        'div',
        { class: 'kr-Toolbar' },
        tag,
        commitBtn,
        state
      ),
      error,
      h(
        'table',
        { class: 'kr-Table kr-VersionTable', 'aria-label': `Versions of ${name}` },
        h('thead', null, h('tr', null, ['Version', 'Tag', 'Image', 'Size', 'SHA-256', 'Created', ''].map(c => h('th', null, c)))),
        h(
          'tbody',
          null,
          versions.length
            ? versions.map(v =>
                h(
                  'tr',
                  { 'data-version': v.version },
                  h('td', null, String(v.version)),
                  h('td', null, v.tag),
                  h('td', { class: 'kr-Mono' }, v.image),
                  h('td', null, formatBytes(v.size)),
                  h('td', { class: 'kr-Mono', title: v.sha256 }, v.sha256.slice(0, 12)),
                  h('td', null, `${formatTime(v.created_at)} by ${v.created_by}`),
                  h('td', null, button('Delete', () => void removeVersion(v), { cls: 'kr-mod-danger', title: `Delete version ${v.version} of ${name}` }))
                )
              )
            : h('tr', null, h('td', { colspan: 7, class: 'kr-Muted' }, 'No versions yet: commit one.'))
        )
      )
    );
  }

  private _name: HTMLInputElement;
  private _image: HTMLInputElement;
  private _node: HTMLSelectElement;
  private _error: HTMLElement;
  private _status: HTMLElement;
  private _list: HTMLElement;
  private _form: HTMLFormElement;
  private _createBtn: HTMLButtonElement;
}
