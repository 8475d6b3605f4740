/**
 * The submit dialog: command, name, cores, memory, GPUs (none, a count, or picked on a
 * per-node GPU map that shows free/busy), target node/NUMA, env, image (when a node has
 * Docker), priority, workdir. Errors, ours or the server's, are shown at their field and
 * keep the dialog open.
 */

import { Dialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { ApiError } from '../api';
import { h, replaceChildren } from '../components/dom';
import { ClusterModel } from '../model';
import { buildSubmitBody, INodeInfo, ISubmitForm, parseFieldErrors } from '../models';

export interface ISubmitDefaults {
  cores: number;
  memory: string;
  gpus: number;
}

const FIELDS = ['command', 'name', 'cores', 'memory', 'gpus', 'targets', 'env', 'image', 'priority', 'workdir'];

export class SubmitForm extends Widget {
  constructor(
    readonly model: ClusterModel,
    defaults: ISubmitDefaults
  ) {
    super();
    this.addClass('kr-SubmitForm');
    const nodes = [...model.nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
    const input = (name: string, attrs: Record<string, unknown> = {}) =>
      h('input', { class: 'jp-mod-styled', name, id: `kr-submit-${name}`, 'aria-describedby': `kr-err-${name}`, ...attrs });
    this._inputs = {
      command: input('command', { placeholder: "python train.py --epochs 3", required: true, autocomplete: 'off' }),
      name: input('name', { placeholder: 'optional' }),
      cores: input('cores', { type: 'number', min: 0, value: String(defaults.cores) }),
      memory: input('memory', { placeholder: 'e.g. 8G', title: 'Memory limit, e.g. 512M or 8G (empty: no limit)', value: defaults.memory }),
      gpuCount: input('gpuCount', { type: 'number', min: 0, value: String(defaults.gpus), 'aria-label': 'GPU count' }),
      image: input('image', { placeholder: 'container image (docker nodes)' }),
      priority: input('priority', { type: 'number', value: '0' }),
      workdir: input('workdir', { placeholder: '/absolute/path (optional)' })
    };
    this._env = h('textarea', { class: 'jp-mod-styled', name: 'env', id: 'kr-submit-env', rows: 2, placeholder: 'NAME=value, one per line', 'aria-describedby': 'kr-err-env' });
    this._target = h(
      'select',
      { class: 'jp-mod-styled', name: 'targets', id: 'kr-submit-targets', 'aria-describedby': 'kr-err-targets' },
      h('option', { value: '' }, 'any node'),
      nodes.flatMap(n => [
        h('option', { value: n.name }, `${n.name}${n.status === 'online' ? '' : ' (offline)'}`),
        (n.numa ?? []).length > 1 ? (n.numa ?? []).map(z => h('option', { value: `${n.name}:${z.id}` }, `${n.name} NUMA ${z.id}`)) : []
      ].flat())
    );
    const mode = (value: string, label: string) =>
      h('label', { class: 'kr-Radio' }, h('input', { type: 'radio', name: 'kr-gpu-mode', value, checked: value === (defaults.gpus ? 'count' : 'none'), onchange: () => this._syncMode() }), label);
    this._gpuMap = h(
      'div',
      { class: 'kr-GpuMap', role: 'group', 'aria-label': 'GPU map (arrow keys move, Space or Enter picks)', onkeydown: (e: KeyboardEvent) => this._onMapKey(e) },
      this._buildMap(nodes)
    );
    this._general = h('div', { class: 'kr-Error', role: 'alert', id: 'kr-err-', hidden: true });
    const hasDocker = nodes.some(n => (n.backends ?? []).includes('docker'));
    const field = (label: string, name: string, control: HTMLElement, hidden = false) =>
      h(
        'div',
        { class: 'kr-Field', 'data-field': name, hidden },
        h('label', { for: control.id }, label),
        control,
        h('div', { class: 'kr-FieldError', id: `kr-err-${name}`, role: 'alert' })
      );
    replaceChildren(
      this.node,
      this._general,
      field('Command', 'command', this._inputs.command),
      field('Name', 'name', this._inputs.name),
      h('div', { class: 'kr-FieldRow' }, field('Cores', 'cores', this._inputs.cores), field('Memory', 'memory', this._inputs.memory), field('Priority', 'priority', this._inputs.priority)),
      h(
        'fieldset',
        { class: 'kr-Field', 'data-field': 'gpus' },
        h('legend', null, 'GPUs'),
        h('div', { class: 'kr-FieldRow' }, mode('none', 'none'), mode('count', 'count'), this._inputs.gpuCount, mode('pick', 'pick on the map')),
        this._gpuMap,
        h('div', { class: 'kr-FieldError', id: 'kr-err-gpus', role: 'alert' })
      ),
      field('Target', 'targets', this._target),
      field('Environment', 'env', this._env),
      field('Image', 'image', this._inputs.image, !hasDocker),
      field('Working directory', 'workdir', this._inputs.workdir)
    );
    this._syncMode();
  }

  private _buildMap(nodes: INodeInfo[]): HTMLElement[] {
    const withGpus = nodes.filter(n => (n.gpus ?? []).length);
    if (!withGpus.length) {
      return [h('p', { class: 'kr-Muted' }, 'No node has GPUs.')];
    }
    return withGpus.map(n =>
      h(
        'div',
        { class: 'kr-GpuMap-node' },
        h('span', { class: 'kr-GpuMap-name' }, n.name),
        (n.gpus ?? []).map(g => {
          const holder = n.usage?.gpus_used?.[String(g.index)];
          const chip = h(
            'button',
            {
              type: 'button',
              class: `kr-GpuChip${holder ? ' kr-mod-busy' : ''}`,
              'aria-pressed': 'false',
              tabindex: -1,
              'data-node': n.name,
              'data-gpu': g.index,
              title: holder ? `GPU ${g.index} busy (task ${holder})` : `GPU ${g.index} free${g.numa_node !== null && g.numa_node !== undefined ? `, NUMA ${g.numa_node}` : ''}`,
              onclick: () => {
                const picks = (this._picks[n.name] ??= []);
                const i = picks.indexOf(g.index);
                if (i >= 0) {
                  picks.splice(i, 1);
                } else {
                  picks.push(g.index);
                }
                chip.setAttribute('aria-pressed', String(i < 0));
                this._setMode('pick');
              }
            },
            `${g.index}${holder ? ' ●' : ''}`
          );
          return chip;
        })
      )
    );
  }

  /** The map is one tab stop (and none unless picking): 200 GPUs must not be 200 Tab presses. */
  private _onMapKey(e: KeyboardEvent): void {
    const chips = Array.from(this._gpuMap.querySelectorAll('.kr-GpuChip')) as HTMLButtonElement[];
    const i = chips.indexOf(e.target as HTMLButtonElement);
    if (i < 0) {
      return;
    }
    const step: Record<string, number> = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
    let j: number;
    if (e.key in step) {
      j = Math.max(0, Math.min(chips.length - 1, i + step[e.key]));
    } else if (e.key === 'Home' || e.key === 'End') {
      j = e.key === 'Home' ? 0 : chips.length - 1;
    } else {
      return;
    }
    e.preventDefault();
    e.stopPropagation();
    chips[i].tabIndex = -1;
    chips[j].tabIndex = 0;
    chips[j].focus();
  }

  private _mode(): ISubmitForm['gpuMode'] {
    const checked = this.node.querySelector('input[name="kr-gpu-mode"]:checked') as HTMLInputElement | null;
    return (checked?.value as ISubmitForm['gpuMode']) ?? 'none';
  }

  private _setMode(mode: string): void {
    const radio = this.node.querySelector(`input[name="kr-gpu-mode"][value="${mode}"]`) as HTMLInputElement;
    radio.checked = true;
    this._syncMode();
  }

  private _syncMode(): void {
    const mode = this._mode();
    this._inputs.gpuCount.disabled = mode !== 'count';
    this._target.disabled = mode === 'pick';
    this._gpuMap.classList.toggle('kr-mod-active', mode === 'pick');
    const chips = Array.from(this._gpuMap.querySelectorAll('.kr-GpuChip')) as HTMLElement[];
    const stop = chips.find(c => c.tabIndex === 0) ?? chips[0];
    for (const c of chips) {
      c.tabIndex = mode === 'pick' && c === stop ? 0 : -1;
    }
  }

  form(): ISubmitForm {
    const v = (k: string) => this._inputs[k].value;
    return {
      command: v('command'),
      name: v('name'),
      cores: v('cores'),
      memory: v('memory'),
      gpuMode: this._mode(),
      gpuCount: v('gpuCount'),
      gpuPicks: this._picks,
      target: this._target.value,
      env: this._env.value,
      image: v('image'),
      priority: v('priority'),
      workdir: v('workdir')
    };
  }

  showErrors(errors: Record<string, string>): void {
    for (const el of Array.from(this.node.querySelectorAll('.kr-FieldError'))) {
      el.textContent = '';
    }
    for (const el of Array.from(this.node.querySelectorAll('[aria-invalid]'))) {
      el.removeAttribute('aria-invalid');
    }
    this._general.hidden = true;
    let first: HTMLElement | null = null;
    for (const [field, message] of Object.entries(errors)) {
      const slot = field ? (this.node.querySelector(`#kr-err-${field}`) as HTMLElement | null) : null;
      if (slot) {
        slot.textContent = message;
        const control = this.node.querySelector(`#kr-submit-${field}`) as HTMLElement | null;
        control?.setAttribute('aria-invalid', 'true');
        first ??= control;
      } else {
        this._general.hidden = false;
        this._general.textContent = (this._general.textContent ? this._general.textContent + '; ' : '') + (field ? `${field}: ` : '') + message;
      }
    }
    first?.focus();
  }

  /**
   * Validate and submit; returns the new task IDs, or null with errors shown. The form's
   * `data-state` says where it is: `invalid` (refused here), `submitting` (`aria-busy`),
   * `refused` (the host's 4xx), `failed` (anything else) or `submitted`.
   */
  async submit(): Promise<string[] | null> {
    const built = buildSubmitBody(this.form());
    if (built.errors) {
      this.showErrors(built.errors);
      this._setState('invalid');
      return null;
    }
    this._setState('submitting');
    try {
      const result = await this.model.api.submit(built.body);
      this._setState('submitted');
      return result.task_ids;
    } catch (error) {
      if (error instanceof ApiError && error.status === 400) {
        this.showErrors(parseFieldErrors(error.message, FIELDS));
      } else {
        this.showErrors({ '': (error as Error).message });
      }
      this._setState(error instanceof ApiError && error.status >= 400 && error.status < 500 ? 'refused' : 'failed');
      return null;
    }
  }

  private _setState(state: 'invalid' | 'submitting' | 'refused' | 'failed' | 'submitted'): void {
    this.node.dataset.state = state;
    this.node.setAttribute('aria-busy', String(state === 'submitting'));
  }

  private _inputs: Record<string, HTMLInputElement>;
  private _env: HTMLTextAreaElement;
  private _target: HTMLSelectElement;
  private _gpuMap: HTMLElement;
  private _general: HTMLElement;
  private _picks: Record<string, number[]> = {};
}

/** A Dialog whose Submit button only closes it once the host accepted the task. */
class SubmitDialog extends Dialog<void> {
  constructor(readonly form: SubmitForm) {
    super({
      title: 'Submit a task',
      body: form,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Submit' })],
      focusNodeSelector: '#kr-submit-command'
    });
    this.addClass('kr-SubmitDialog');
  }

  taskIds: string[] = [];

  resolve(index?: number): void {
    const i = index ?? 1;
    if (i !== 1) {
      super.resolve(i);
      return;
    }
    if (this._busy) {
      return;
    }
    this._busy = true;
    void this.form.submit().then(ids => {
      this._busy = false;
      if (ids) {
        this.taskIds = ids;
        super.resolve(i);
      }
    });
  }

  private _busy = false;
}

/** Show the dialog; resolves with the submitted task IDs (empty when cancelled). */
export async function showSubmitDialog(model: ClusterModel, defaults: ISubmitDefaults): Promise<string[]> {
  if (!model.nodes.size) {
    await model.refresh();
  }
  const dialog = new SubmitDialog(new SubmitForm(model, defaults));
  const result = await dialog.launch();
  return result.button.accept ? dialog.taskIds : [];
}
