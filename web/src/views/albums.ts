// Albums: the grid of covers, and one album with its tracks.

import { api } from "../api";
import type { Album } from "../api";
import type { App, View } from "../context";
import { errorText } from "../context";
import { h, mount } from "../dom";
import * as fmt from "../format";
import { icon } from "../icons";
import { albumTracks, button, emptyState, loading, viewHeader } from "./common";
import { cover } from "./cover";
import { TrackTable } from "./tracktable";

const PAGE = 200;

function card(app: App, album: Album): HTMLElement {
  const play = async (): Promise<void> => {
    try {
      const tracks = await albumTracks(album);
      if (tracks.length) await app.player.playList(tracks, 0);
    } catch (error) {
      app.toast(errorText(error), "error");
    }
  };
  const meta = [album.artist ?? "Unknown artist", album.year ?? null].filter(Boolean).join(" · ");
  return h(
    "li",
    { class: "album-card" },
    h(
      "a",
      { href: `#/albums/${album.id}`, class: "album-link" },
      cover({ albumId: album.id, hasCover: album.has_cover, title: album.title }),
      h("span", { class: "album-title" }, album.title),
      h("span", { class: "album-meta" }, meta),
    ),
    h(
      "button",
      {
        type: "button",
        class: "fab album-play",
        "aria-label": `Play ${album.title}`,
        on: { click: () => void play() },
      },
      icon("play"),
    ),
  );
}

export function albumsView(app: App): View {
  const grid = h("ul", { class: "album-grid", "aria-label": "Albums" });
  const more = h("div", { class: "more" });
  const count = h("span");
  const el = h(
    "section",
    { class: "view", "aria-labelledby": "view-title" },
    viewHeader("Albums", count),
    grid,
    more,
  );
  let cursor: string | null = null;

  const load = async (reset: boolean): Promise<void> => {
    if (reset) {
      cursor = null;
      mount(grid, loading("Loading albums"));
    }
    try {
      const page = await api.albums({ limit: PAGE, ...(cursor ? { cursor } : {}) });
      if (reset) grid.replaceChildren();
      grid.append(...page.items.map((album) => card(app, album)));
      count.textContent = fmt.plural(page.total, "album");
      cursor = page.next_cursor;
      mount(more, cursor ? button("Show more albums", () => void load(false)) : null);
      if (reset && page.items.length === 0) {
        mount(
          grid,
          emptyState(
            "No albums yet",
            "Scan a music folder: tonearm serve --library ~/Music",
            "album",
          ),
        );
      }
    } catch (error) {
      mount(grid, emptyState("Albums could not be loaded", errorText(error), "album"));
    }
  };
  void load(true);
  const off = app.onLibraryChanged(() => void load(true));
  return { el, title: "Albums", dispose: off };
}

export function albumView(app: App, param: string | undefined): View {
  const id = Number(param);
  const el = h(
    "section",
    { class: "view", "aria-labelledby": "view-title" },
    loading("Loading the album"),
  );
  const table = new TrackTable(app, {
    label: "Tracks of the album",
    albumNumbers: true,
    showAlbum: false,
  });

  const load = async (): Promise<void> => {
    try {
      const album = await api.album(id);
      const tracks = await albumTracks(album);
      table.setTracks(tracks);
      const total = tracks.reduce((sum, t) => sum + t.duration_s, 0);
      const facts = [
        album.artist,
        album.year,
        fmt.plural(tracks.length, "track"),
        fmt.duration(total),
      ]
        .filter((x) => x !== null && x !== undefined && x !== "")
        .join(" · ");
      mount(
        el,
        h(
          "header",
          { class: "album-hero" },
          cover({ albumId: album.id, hasCover: album.has_cover, title: album.title }, "l"),
          h(
            "div",
            { class: "album-hero-text" },
            h("p", { class: "eyebrow" }, "Album"),
            h("h1", { id: "view-title", tabindex: "-1" }, album.title),
            h("p", { class: "subtitle" }, facts),
            h(
              "div",
              { class: "view-actions" },
              button("Play", () => void app.player.playList(tracks, 0), {
                icon: "play",
                kind: "primary",
              }),
              button(
                "Add to queue",
                () => {
                  app.player.enqueue(tracks);
                  app.toast(`Added ${fmt.plural(tracks.length, "track")} to the queue`);
                },
                { icon: "queue" },
              ),
              button("Add to playlist", () => app.addToPlaylist(tracks), { icon: "plus" }),
            ),
          ),
        ),
        table.el,
      );
    } catch (error) {
      mount(el, emptyState("This album could not be loaded", errorText(error), "album"));
    }
  };
  void load();
  const off = app.onLibraryChanged(() => void load());
  return {
    el,
    title: "Album",
    dispose: () => {
      off();
      table.dispose();
    },
  };
}
