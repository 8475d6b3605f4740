/**
 * The Nodes view: per node its resources, NUMA layout, GPUs, backends, status, and charts
 * of CPU, memory and GPU utilization over the last minutes (from `GET /nodes/{name}`
 * history, then extended by live `metrics` events). Only the node that changed is redrawn,
 * at most once per animation frame.
 */

import { Widget } from '@lumino/widgets';

import { lineChart } from '../components/chart';
import { button, h, replaceChildren } from '../components/dom';
import { gpuRows } from '../components/nodecard';
import { ClusterModel } from '../model';
import { formatBytes, formatTime, INodeInfo, percent } from '../models';
import { compactRanges } from './nodesutil';
import { IPanelActions } from './sidebar';

const GPU_COLORS = [
  'var(--jp-brand-color1)',
  'var(--jp-accent-color1)',
  'var(--jp-warn-color1)',
  'var(--jp-success-color1)',
  'var(--jp-error-color1)',
  'var(--jp-brand-color3)',
  'var(--jp-accent-color3)',
  'var(--jp-warn-color3)'
];

export class NodesView extends Widget {
  constructor(
    readonly model: ClusterModel,
    readonly actions: IPanelActions
  ) {
    super();
    this.id = 'kohakuriver-nodes';
    this.addClass('kr-NodesView');
    this.title.label = 'Cluster nodes';
    this._list = h('div', { class: 'kr-NodeGrid' });
    replaceChildren(
      this.node,
      h('div', { class: 'kr-Toolbar' }, h('h2', null, 'Nodes'), button('Refresh', () => void this._loadHistory(), { title: 'Reload nodes and history' })),
      this._list
    );
    model.nodeChanged.connect((_, name) => this._queue(name), this);
    this._renderAll();
    void this._loadHistory();
  }

  private async _loadHistory(): Promise<void> {
    await this.model.refresh();
    const names = [...this.model.nodes.keys()];
    const worker = async () => {
      for (let name = names.shift(); name; name = names.shift()) {
        try {
          const node = await this.model.api.node(name);
          this.model.mergeHistory(name, node.history ?? []);
          this._queue(name);
        } catch {
          // node vanished meanwhile
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  }

  private _queue(name: string | null): void {
    if (name === null) {
      this._all = true;
    } else {
      this._dirty.add(name);
    }
    if (!this._frame) {
      this._frame = requestAnimationFrame(() => {
        this._frame = 0;
        if (this._all) {
          this._all = false;
          this._dirty.clear();
          this._renderAll();
          return;
        }
        for (const n of this._dirty) {
          this._renderOne(n);
        }
        this._dirty.clear();
      });
    }
  }

  private _renderAll(): void {
    const nodes = [...this.model.nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
    replaceChildren(this._list, nodes.length ? nodes.map(n => this._card(n)) : h('p', { class: 'kr-Muted' }, 'No nodes yet.'));
  }

  private _renderOne(name: string): void {
    if (!this.isVisible) {
      this._stale.add(name);
      return;
    }
    const node = this.model.nodes.get(name);
    const old = this._list.querySelector(`[data-node="${CSS.escape(name)}"]`);
    if (node && old) {
      old.replaceWith(this._card(node));
    } else {
      this._renderAll();
    }
  }

  protected onAfterShow(): void {
    for (const n of this._stale) {
      this._renderOne(n);
    }
    this._stale.clear();
  }

  private _card(node: INodeInfo): HTMLElement {
    const history = this.model.history.get(node.name) ?? [];
    const gpuIdx = (node.gpus ?? []).map(g => g.index);
    const cpuMem = lineChart(
      'CPU and memory',
      [
        { label: 'CPU', color: 'var(--jp-brand-color1)', points: history.map(s => ({ t: s.at, v: s.cpu_percent })) },
        { label: 'Memory', color: 'var(--jp-warn-color1)', points: history.map(s => ({ t: s.at, v: percent(s.memory_used, s.memory_total) })) }
      ],
      60
    );
    const gpuChart = gpuIdx.length
      ? lineChart(
          'GPU utilization',
          gpuIdx.map((idx, i) => ({
            label: `GPU ${idx}`,
            color: GPU_COLORS[i % GPU_COLORS.length],
            points: history.map(s => ({ t: s.at, v: s.gpus?.find(g => g.index === idx)?.utilization ?? null }))
          })),
          60
        )
      : null;
    const usage = node.usage;
    return h(
      'article',
      { class: `kr-NodePanel kr-mod-${node.status}`, 'data-node': node.name, 'aria-label': `node ${node.name}` },
      h(
        'header',
        { class: 'kr-NodeCard-head' },
        h('span', { class: `kr-Dot kr-mod-${node.status}` }),
        h('h3', null, node.name),
        h('span', { class: 'kr-Muted' }, `${node.status} · ${node.hostname || ''} · runner ${node.version || '?'} · heartbeat ${formatTime(node.last_heartbeat)}`)
      ),
      h(
        'dl',
        { class: 'kr-Info kr-Info-compact' },
        h('dt', null, 'Cores'),
        h('dd', null, `${usage?.cores_used.length ?? 0} of ${node.cores.length} reserved`),
        h('dt', null, 'Memory'),
        h('dd', null, `${formatBytes(usage?.memory_reserved ?? 0)} reserved of ${formatBytes(node.memory_total)}`),
        h('dt', null, 'Backends'),
        h('dd', null, (node.backends ?? []).join(', ') || '–'),
        h('dt', null, 'Tasks'),
        h('dd', null, String(usage?.active_tasks ?? 0)),
        h('dt', null, 'NUMA'),
        h(
          'dd',
          null,
          (node.numa ?? []).length
            ? h(
                'ul',
                { class: 'kr-Numa' },
                (node.numa ?? []).map(z =>
                  h(
                    'li',
                    null,
                    `NUMA ${z.id}: cores ${compactRanges(z.cores)} · ${formatBytes(z.memory_total ?? 0)}`,
                    (node.gpus ?? []).some(g => g.numa_node === z.id)
                      ? ` · GPUs ${(node.gpus ?? []).filter(g => g.numa_node === z.id).map(g => g.index).join(',')}`
                      : ''
                  )
                )
              )
            : '–'
        )
      ),
      h('div', { class: 'kr-Charts' }, cpuMem, gpuChart),
      gpuRows(node, { onTask: id => this.actions.openTask(id) })
    );
  }

  private _list: HTMLElement;
  private _dirty = new Set<string>();
  private _stale = new Set<string>();
  private _all = false;
  private _frame = 0;
}
