/** A tiny DOM builder: `h('div', {class: 'x', onclick}, child, 'text')`. */

export type Child = Node | string | number | null | undefined | false;
export type Attrs = Record<string, unknown>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) {
        continue;
      }
      if (key.startsWith('on') && typeof value === 'function') {
        el.addEventListener(key.slice(2), value as EventListener);
      } else if (key === 'class') {
        el.className = String(value);
      } else if (key === 'dataset') {
        Object.assign(el.dataset, value);
      } else if (key === 'style' && typeof value === 'object') {
        Object.assign(el.style, value);
      } else if (key === 'value' || key === 'checked' || key === 'disabled') {
        (el as any)[key] = value;
      } else {
        el.setAttribute(key, value === true ? '' : String(value));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: (Child | Child[])[]): void {
  for (const child of children) {
    if (Array.isArray(child)) {
      append(el, child);
    } else if (child !== null && child !== undefined && child !== false) {
      el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    }
  }
}

/** Replace all children of `el`. */
export function replaceChildren(el: Element, ...children: (Child | Child[])[]): void {
  el.textContent = '';
  append(el, children);
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {},
  ...children: SVGElement[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    el.setAttribute(k, String(v));
  }
  for (const c of children) {
    el.appendChild(c);
  }
  return el;
}

/** A button that is a real `<button>` (keyboard and screen reader friendly). */
export function button(
  label: string,
  onClick: (ev: MouseEvent) => void,
  opts: { title?: string; cls?: string; disabled?: boolean; accent?: boolean } = {}
): HTMLButtonElement {
  return h(
    'button',
    {
      type: 'button',
      class:
        'jp-Button kr-Button' +
        (opts.accent ? ' jp-mod-styled jp-mod-accept' : ' jp-mod-styled') +
        (opts.cls ? ' ' + opts.cls : ''),
      title: opts.title,
      'aria-label': opts.title ?? label,
      disabled: opts.disabled,
      onclick: onClick
    },
    label
  );
}
