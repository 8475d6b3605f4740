/**
 * A small SVG line chart for time series (CPU %, memory %, GPU %): fixed 0..100 y range,
 * x by time over the samples' window, one polyline per series, axes with a few ticks,
 * a legend, and a `<title>` per series so hovering shows the latest value.
 */

import { h, svg } from './dom';

export interface ISeries {
  label: string;
  /** CSS colour (use JupyterLab variables). */
  color: string;
  points: { t: number; v: number | null }[];
}

const W = 360;
const H = 120;
const PAD = { l: 30, r: 8, t: 8, b: 18 };

/** Scale a series into SVG `points` text; gaps (null) break the line into segments. */
export function polylines(
  points: { t: number; v: number | null }[],
  t0: number,
  t1: number,
  yMax = 100
): string[] {
  const span = Math.max(1e-6, t1 - t0);
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const segments: string[] = [];
  let cur: string[] = [];
  for (const p of points) {
    if (p.v === null || !isFinite(p.v)) {
      if (cur.length) {
        segments.push(cur.join(' '));
      }
      cur = [];
      continue;
    }
    const x = PAD.l + ((p.t - t0) / span) * iw;
    const y = PAD.t + ih - (Math.max(0, Math.min(yMax, p.v)) / yMax) * ih;
    cur.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  }
  if (cur.length) {
    segments.push(cur.join(' '));
  }
  return segments;
}

export function lineChart(title: string, series: ISeries[], windowSeconds?: number): HTMLElement {
  let t1 = 0;
  let t0 = Infinity;
  for (const s of series) {
    for (const p of s.points) {
      t1 = Math.max(t1, p.t);
      t0 = Math.min(t0, p.t);
    }
  }
  if (!isFinite(t0)) {
    t0 = t1 = Date.now() / 1000;
  }
  if (windowSeconds) {
    t0 = Math.min(t0, t1 - windowSeconds);
  }
  const chart = svg('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'kr-Chart-svg',
    role: 'img',
    'aria-label': title
  });
  const ih = H - PAD.t - PAD.b;
  for (const v of [0, 50, 100]) {
    const y = PAD.t + ih - (v / 100) * ih;
    chart.appendChild(
      svg('line', { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: 'kr-Chart-grid' })
    );
    const label = svg('text', { x: PAD.l - 4, y: y + 3, class: 'kr-Chart-tick', 'text-anchor': 'end' });
    label.textContent = `${v}%`;
    chart.appendChild(label);
  }
  const ago = svg('text', { x: PAD.l, y: H - 4, class: 'kr-Chart-tick' });
  ago.textContent = `-${Math.round(t1 - t0)}s`;
  chart.appendChild(ago);
  const now = svg('text', { x: W - PAD.r, y: H - 4, class: 'kr-Chart-tick', 'text-anchor': 'end' });
  now.textContent = 'now';
  chart.appendChild(now);
  for (const s of series) {
    const last = [...s.points].reverse().find(p => p.v !== null);
    for (const pts of polylines(s.points, t0, t1)) {
      const line = svg('polyline', {
        points: pts,
        fill: 'none',
        stroke: s.color,
        'stroke-width': 1.5,
        class: 'kr-Chart-line'
      });
      const tip = svg('title');
      tip.textContent = `${s.label}: ${last?.v?.toFixed(1) ?? '–'}%`;
      line.appendChild(tip);
      chart.appendChild(line);
    }
  }
  const legend = h(
    'div',
    { class: 'kr-Chart-legend' },
    series.map(s => {
      const last = [...s.points].reverse().find(p => p.v !== null);
      return h(
        'span',
        { class: 'kr-Chart-key' },
        h('span', { class: 'kr-Chart-swatch', style: { background: s.color } }),
        `${s.label} ${last?.v !== undefined && last?.v !== null ? last.v.toFixed(0) + '%' : '–'}`
      );
    })
  );
  return h('figure', { class: 'kr-Chart' }, h('figcaption', null, title), chart, legend);
}
