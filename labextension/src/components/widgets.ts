/** Small display pieces: usage bars, status badges. */

import { percent, TaskStatus } from '../models';
import { h } from './dom';

/** A labelled horizontal bar: `label  [#####.....]  text`. */
export function usageBar(label: string, used: number, total: number, text: string): HTMLElement {
  const bar = h('div', { class: 'kr-Bar' }, h('div', { class: 'kr-Bar-fill' }));
  const row = h(
    'div',
    { class: 'kr-BarRow' },
    h('span', { class: 'kr-BarRow-label' }, label),
    bar,
    h('span', { class: 'kr-BarRow-text' }, text)
  );
  setBar(row, used, total, text);
  return row;
}

/** Update a bar made by `usageBar` in place. */
export function setBar(row: HTMLElement, used: number, total: number, text: string): void {
  const pct = percent(used, total);
  const fill = row.querySelector('.kr-Bar-fill') as HTMLElement;
  fill.style.width = `${pct.toFixed(1)}%`;
  fill.classList.toggle('kr-mod-high', pct >= 90);
  const bar = row.querySelector('.kr-Bar') as HTMLElement;
  bar.setAttribute('role', 'meter');
  bar.setAttribute('aria-valuenow', pct.toFixed(0));
  bar.setAttribute('aria-valuemin', '0');
  bar.setAttribute('aria-valuemax', '100');
  (row.querySelector('.kr-BarRow-text') as HTMLElement).textContent = text;
}

export function statusBadge(status: TaskStatus): HTMLElement {
  return h('span', { class: `kr-Status kr-Status-${status}`, 'data-status': status }, status);
}

export function setStatusBadge(el: HTMLElement, status: TaskStatus): void {
  el.className = `kr-Status kr-Status-${status}`;
  el.dataset.status = status;
  el.textContent = status;
}
