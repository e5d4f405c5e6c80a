// Pieces several views share: headers, empty states, buttons, loading the tracks of an album.

import { api } from "../api";
import type { Album, Track } from "../api";
import type { Child } from "../dom";
import { h } from "../dom";
import { icon } from "../icons";
import type { IconName } from "../icons";

export function viewHeader(
  title: string,
  subtitle: Child = null,
  ...actions: Child[]
): HTMLElement {
  return h(
    "header",
    { class: "view-header" },
    h(
      "div",
      { class: "view-heading" },
      h("h1", { id: "view-title", tabindex: "-1" }, title),
      subtitle ? h("p", { class: "subtitle" }, subtitle) : null,
    ),
    actions.length ? h("div", { class: "view-actions" }, actions) : null,
  );
}

export function button(
  label: string,
  onClick: () => void,
  options: {
    icon?: IconName;
    kind?: "primary" | "ghost" | "danger";
    extra?: Record<string, unknown>;
  } = {},
): HTMLButtonElement {
  return h(
    "button",
    {
      type: "button",
      class: `button ${options.kind ?? "ghost"}`,
      on: { click: onClick },
      ...options.extra,
    },
    options.icon ? icon(options.icon) : null,
    h("span", null, label),
  );
}

export function emptyState(title: string, text: Child, iconName: IconName = "tracks"): HTMLElement {
  return h(
    "div",
    { class: "empty" },
    icon(iconName, "icon empty-icon"),
    h("h2", null, title),
    h("p", null, text),
  );
}

export function loading(label = "Loading"): HTMLElement {
  return h(
    "div",
    { class: "loading", role: "status" },
    h("span", { class: "spinner", "aria-hidden": "true" }),
    label + "…",
  );
}

/** Every page of a search, up to `max` items. */
export async function searchAll(query: string, max = 2000): Promise<Track[]> {
  const found: Track[] = [];
  let cursor: string | undefined;
  do {
    const page = await api.tracks({ q: query, limit: 500, ...(cursor ? { cursor } : {}) });
    found.push(...page.items);
    cursor = page.next_cursor ?? undefined;
  } while (cursor && found.length < max);
  return found;
}

/** An album's tracks in disc and track order (a search by its title, then only its own). */
export async function albumTracks(album: Album): Promise<Track[]> {
  const found = await searchAll(album.title);
  return found
    .filter((t) => t.album_id === album.id)
    .sort(
      (a, b) =>
        (a.disc_number ?? 1) - (b.disc_number ?? 1) ||
        (a.track_number ?? 1e9) - (b.track_number ?? 1e9) ||
        (a.title ?? "").localeCompare(b.title ?? ""),
    );
}
