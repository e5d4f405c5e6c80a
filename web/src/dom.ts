// A tiny DOM builder (no framework): h("button", {class: "x", on: {click}}, "Play").

export type Child = Node | string | number | null | undefined | false | Child[];

type Listeners = { [K in keyof HTMLElementEventMap]?: (event: HTMLElementEventMap[K]) => void };

export interface Attrs {
  class?: string | undefined;
  on?: Listeners;
  dataset?: Record<string, string | number>;
  style?: Partial<Record<string, string>>;
  /** Properties set on the element (value, checked, …) rather than attributes. */
  props?: Record<string, unknown>;
  [attribute: string]: unknown;
}

const RESERVED = new Set(["class", "on", "dataset", "style", "props"]);

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (attrs) {
    if (attrs.class) element.className = attrs.class;
    for (const [name, value] of Object.entries(attrs)) {
      if (RESERVED.has(name) || value === undefined || value === null || value === false) continue;
      element.setAttribute(name, value === true ? "" : String(value));
    }
    for (const [key, value] of Object.entries(attrs.dataset ?? {})) {
      element.dataset[key] = String(value);
    }
    for (const [key, value] of Object.entries(attrs.style ?? {})) {
      if (value !== undefined) element.style.setProperty(key, value);
    }
    Object.assign(element, attrs.props ?? {});
    for (const [type, listener] of Object.entries(attrs.on ?? {})) {
      element.addEventListener(type, listener as EventListener);
    }
  }
  append(element, children);
  return element;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace `parent`'s children. */
export function mount(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

/** Find a required element; a missing one is a programming error. */
export function $<E extends HTMLElement = HTMLElement>(
  selector: string,
  root: ParentNode = document,
): E {
  const found = root.querySelector<E>(selector);
  if (!found) throw new Error(`no element ${selector}`);
  return found;
}

/** Run `fn` at most once per `ms`, with the last arguments (trailing). */
export function debounce<A extends unknown[]>(fn: (...args: A) => void, ms: number) {
  let timer: number | undefined;
  return (...args: A): void => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => fn(...args), ms);
  };
}

/** A label that only screen readers read. */
export function srOnly(text: string): HTMLSpanElement {
  return h("span", { class: "visually-hidden" }, text);
}
