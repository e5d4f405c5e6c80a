// All tracks: search as you type (the search box), sort, and page on by scrolling (keyset
// cursors: as fast deep in a big library as on the first page).

import { api } from "../api";
import type { TrackOrder } from "../api";
import type { App, View } from "../context";
import { errorText } from "../context";
import { h, mount } from "../dom";
import * as fmt from "../format";
import { button, emptyState, loading, viewHeader } from "./common";
import { TrackTable } from "./tracktable";

const PAGE = 100;
const ORDERS: [TrackOrder, string][] = [
  ["title", "Title"],
  ["added", "Recently added"],
  ["duration", "Duration"],
  ["loudness", "Loudness (quietest first)"],
  ["path", "File path"],
];
const ORDER_KEY = "tonearm.order";

export function tracksView(app: App): View {
  let order = (localStorage.getItem(ORDER_KEY) as TrackOrder | null) ?? "title";
  if (!ORDERS.some(([o]) => o === order)) order = "title";
  let cursor: string | null = null;
  let request = 0;

  const count = h("span", { role: "status", "aria-live": "polite", class: "count" });
  const select = h(
    "select",
    {
      id: "track-order",
      on: { change: () => sortBy(select.value as TrackOrder) },
    },
    ORDERS.map(([value, label]) =>
      h("option", { value, props: { selected: value === order } }, label),
    ),
  );
  const sortControl = h("label", { class: "select-label" }, h("span", null, "Sort by"), select);
  const status = h("div");
  const more = h("div", { class: "more" });
  let table = makeTable();
  const holder = h("div", null, table.el);
  const el = h(
    "section",
    { class: "view", "aria-labelledby": "view-title" },
    viewHeader("Tracks", count, sortControl),
    status,
    holder,
    more,
  );

  function makeTable(): TrackTable {
    return new TrackTable(app, { label: "Tracks", order, onSort: sortBy });
  }

  function sortBy(next: TrackOrder): void {
    order = next;
    select.value = next;
    localStorage.setItem(ORDER_KEY, next);
    table.dispose();
    table = makeTable();
    holder.replaceChildren(table.el);
    void load(true);
  }

  async function load(reset: boolean): Promise<void> {
    const mine = ++request;
    const q = app.query.trim();
    if (reset) {
      cursor = null;
      if (!table.length) mount(status, loading("Loading tracks"));
    }
    try {
      const page = await api.tracks({
        order,
        limit: PAGE,
        ...(q ? { q } : {}),
        ...(!reset && cursor ? { cursor } : {}),
      });
      if (mine !== request) return; // a newer search is on its way
      if (reset) table.setTracks(page.items);
      else table.append(page.items);
      cursor = page.next_cursor;
      const total = `${page.total_exact ? "" : "about "}${fmt.plural(page.total, "track")}`;
      count.textContent = q ? `${total} matching “${q}”` : total;
      mount(
        status,
        page.total === 0
          ? q
            ? emptyState(
                "Nothing matches",
                `No title, artist, album or genre contains “${q}”.`,
                "search",
              )
            : emptyState("No tracks yet", "Scan a music folder: tonearm serve --library ~/Music")
          : null,
      );
      mount(more, cursor ? button("Show more tracks", () => void load(false)) : null);
    } catch (error) {
      if (mine === request)
        mount(status, emptyState("Tracks could not be loaded", errorText(error)));
    }
  }

  // Page on when the "more" button scrolls into view.
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && cursor) void load(false);
  });
  observer.observe(more);

  void load(true);
  const offSearch = app.onSearch(() => void load(true));
  const offLibrary = app.onLibraryChanged(() => void load(true));
  return {
    el,
    title: "Tracks",
    dispose: () => {
      observer.disconnect();
      offSearch();
      offLibrary();
      table.dispose();
    },
  };
}

export function favouritesView(app: App): View {
  const table = new TrackTable(app, { label: "Favourite tracks" });
  const count = h("span");
  const status = h("div", null, loading("Loading favourites"));
  const el = h(
    "section",
    { class: "view", "aria-labelledby": "view-title" },
    viewHeader("Favourites", count),
    status,
    table.el,
  );

  const load = async (): Promise<void> => {
    try {
      const tracks = await api.favourites();
      table.setTracks(tracks);
      count.textContent = fmt.plural(tracks.length, "favourite");
      mount(
        status,
        tracks.length
          ? null
          : emptyState(
              "No favourites yet",
              "Press the heart beside a track to keep it here.",
              "heart",
            ),
      );
    } catch (error) {
      mount(status, emptyState("Favourites could not be loaded", errorText(error), "heart"));
    }
  };
  void load();
  const off = app.onLibraryChanged(() => void load());
  const offFavourite = app.onFavouriteChanged(() => void load());
  return {
    el,
    title: "Favourites",
    dispose: () => {
      off();
      offFavourite();
      table.dispose();
    },
  };
}
