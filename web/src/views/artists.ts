// Artists: the list, and one artist's albums and tracks.

import { api } from "../api";
import type { Album, Artist } from "../api";
import type { App, View } from "../context";
import { errorText } from "../context";
import { h, mount } from "../dom";
import * as fmt from "../format";
import { button, emptyState, loading, searchAll, viewHeader } from "./common";
import { cover } from "./cover";
import { TrackTable } from "./tracktable";

const PAGE = 200;

function avatar(name: string): HTMLElement {
  const el = cover({ albumId: null, hasCover: false, title: name }, "m");
  el.classList.add("round");
  return el;
}

export function artistsView(app: App): View {
  const list = h("ul", { class: "artist-grid", "aria-label": "Artists" });
  const count = h("span");
  const more = h("div", { class: "more" });
  const el = h(
    "section",
    { class: "view", "aria-labelledby": "view-title" },
    viewHeader("Artists", count),
    list,
    more,
  );
  let offset = 0;

  const item = (artist: Artist) =>
    h(
      "li",
      null,
      h(
        "a",
        { href: `#/artists/${artist.id}`, class: "artist-link" },
        avatar(artist.name),
        h("span", null, artist.name),
      ),
    );

  const load = async (reset: boolean): Promise<void> => {
    if (reset) {
      offset = 0;
      mount(list, loading("Loading artists"));
    }
    try {
      const page = await api.artists({ limit: PAGE, offset });
      if (reset) list.replaceChildren();
      list.append(...page.items.map(item));
      offset += page.items.length;
      count.textContent = fmt.plural(page.total, "artist");
      mount(more, offset < page.total ? button("Show more artists", () => void load(false)) : null);
      if (reset && page.items.length === 0)
        mount(
          list,
          emptyState("No artists yet", "Scan a music folder to fill the library.", "artist"),
        );
    } catch (error) {
      mount(list, emptyState("Artists could not be loaded", errorText(error), "artist"));
    }
  };
  void load(true);
  const off = app.onLibraryChanged(() => void load(true));
  return { el, title: "Artists", dispose: off };
}

/** An artist by id: the artists endpoint has no single-artist route, so find it by paging. */
async function findArtist(id: number): Promise<Artist | null> {
  for (let offset = 0; offset < 100_000; offset += 500) {
    const page = await api.artists({ limit: 500, offset });
    const found = page.items.find((a) => a.id === id);
    if (found) return found;
    if (!page.items.length || offset + page.items.length >= page.total) return null;
  }
  return null;
}

export function artistView(app: App, param: string | undefined): View {
  const id = Number(param);
  const el = h(
    "section",
    { class: "view", "aria-labelledby": "view-title" },
    loading("Loading the artist"),
  );
  const table = new TrackTable(app, { label: "Tracks of the artist" });

  const load = async (): Promise<void> => {
    try {
      const artist = await findArtist(id);
      if (!artist) {
        mount(el, emptyState("No such artist", "It may have gone in the last scan.", "artist"));
        return;
      }
      const [tracks, albums] = await Promise.all([
        searchAll(artist.name).then((all) => all.filter((t) => t.artist === artist.name)),
        api
          .albums({ q: artist.name, limit: 200 })
          .then((page) => page.items.filter((a) => a.artist === artist.name)),
      ]);
      table.setTracks(tracks);
      const albumItem = (album: Album) =>
        h(
          "li",
          { class: "album-card" },
          h(
            "a",
            { href: `#/albums/${album.id}`, class: "album-link" },
            cover({ albumId: album.id, hasCover: album.has_cover, title: album.title }),
            h("span", { class: "album-title" }, album.title),
            h("span", { class: "album-meta" }, album.year ?? ""),
          ),
        );
      mount(
        el,
        viewHeader(
          artist.name,
          `${fmt.plural(albums.length, "album")} · ${fmt.plural(tracks.length, "track")}`,
          button("Play all", () => void app.player.playList(tracks, 0), {
            icon: "play",
            kind: "primary",
          }),
        ),
        albums.length ? h("h2", { class: "section-title" }, "Albums") : null,
        albums.length
          ? h(
              "ul",
              { class: "album-grid compact", "aria-label": `Albums by ${artist.name}` },
              albums.map(albumItem),
            )
          : null,
        h("h2", { class: "section-title" }, "Tracks"),
        table.el,
      );
    } catch (error) {
      mount(el, emptyState("This artist could not be loaded", errorText(error), "artist"));
    }
  };
  void load();
  const off = app.onLibraryChanged(() => void load());
  return {
    el,
    title: "Artist",
    dispose: () => {
      off();
      table.dispose();
    },
  };
}
