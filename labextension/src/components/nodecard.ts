/** A node card: status, CPU/memory bars, one row per GPU (utilization, memory, temperature, holder). */

import { formatBytes, INodeInfo } from '../models';
import { h } from './dom';
import { usageBar } from './widgets';

export interface INodeCardOptions {
  onTask?: (taskId: string) => void;
}

export function gpuRows(node: INodeInfo, opts: INodeCardOptions = {}): HTMLElement | null {
  const gpus = node.gpus ?? [];
  if (!gpus.length) {
    return null;
  }
  const metrics = new Map((node.metrics?.gpus ?? []).map(g => [g.index, g]));
  const holders = node.usage?.gpus_used ?? {};
  return h(
    'table',
    { class: 'kr-GpuTable' },
    h(
      'thead',
      null,
      h('tr', null, h('th', null, 'GPU'), h('th', null, 'util'), h('th', null, 'memory'), h('th', null, 'temp'), h('th', null, 'task'))
    ),
    h(
      'tbody',
      null,
      gpus.map(g => {
        const m = metrics.get(g.index);
        const holder = holders[String(g.index)];
        const memTotal = m?.memory_total ?? g.memory_total ?? 0;
        return h(
          'tr',
          { class: holder ? 'kr-Gpu kr-mod-busy' : 'kr-Gpu', 'data-gpu': g.index },
          h('td', { title: g.name || '' }, `${g.index}`),
          h('td', null, m?.utilization !== null && m?.utilization !== undefined ? `${m.utilization.toFixed(0)}%` : '–'),
          h('td', null, m?.memory_used !== null && m?.memory_used !== undefined ? bytesOf(m.memory_used, memTotal) : formatBytes(memTotal)),
          h('td', null, m?.temperature !== null && m?.temperature !== undefined ? `${m.temperature.toFixed(0)}°C` : '–'),
          h(
            'td',
            null,
            holder
              ? h('a', { href: '#', class: 'kr-Link', onclick: (e: Event) => { e.preventDefault(); opts.onTask?.(holder); } }, holder.slice(-6))
              : h('span', { class: 'kr-Muted' }, 'free')
          )
        );
      })
    )
  );
}

export function nodeCard(node: INodeInfo, opts: INodeCardOptions = {}): HTMLElement {
  const m = node.metrics;
  const cores = node.cores.length;
  const usedCores = node.usage?.cores_used.length ?? 0;
  return h(
    'div',
    { class: `kr-NodeCard kr-mod-${node.status}`, 'data-node': node.name },
    h(
      'div',
      { class: 'kr-NodeCard-head' },
      h('span', { class: `kr-Dot kr-mod-${node.status}`, title: node.status }),
      h('span', { class: 'kr-NodeCard-name' }, node.name),
      h('span', { class: 'kr-Muted' }, `${usedCores}/${cores} cores · ${(node.backends ?? []).join(', ') || 'no backend'}`)
    ),
    usageBar('CPU', m?.cpu_percent ?? 0, 100, m ? `${m.cpu_percent.toFixed(0)}%` : '–'),
    usageBar(
      'Mem',
      m?.memory_used ?? 0,
      m?.memory_total || node.memory_total,
      m ? `${formatBytes(m.memory_used)} / ${formatBytes(m.memory_total || node.memory_total)}` : formatBytes(node.memory_total)
    ),
    gpuRows(node, opts)
  );
}

/** `8.0/24.0 GiB` (one unit when both share it): fits the sidebar's narrow GPU table. */
export function bytesOf(used: number, total: number): string {
  const a = formatBytes(used);
  const b = formatBytes(total);
  const [an, au] = a.split(' ');
  const [, bu] = b.split(' ');
  return au && au === bu ? `${an}/${b}` : `${a}/${b}`;
}
