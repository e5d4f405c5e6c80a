// Playlists: the list (create one), and one playlist (play, rename, delete, remove tracks).

import { api } from "../api";
import type { Playlist, Track } from "../api";
import type { App, View } from "../context";
import { errorText } from "../context";
import { h, mount } from "../dom";
import * as fmt from "../format";
import { icon } from "../icons";
import { button, emptyState, loading, viewHeader } from "./common";
import { TrackTable } from "./tracktable";

/** A one-field form: a labelled text input and a submit button. */
export function nameForm(
  label: string,
  submitLabel: string,
  onSubmit: (name: string) => Promise<void>,
  initial = "",
): HTMLFormElement {
  const input = h("input", {
    type: "text",
    name: "name",
    required: true,
    maxlength: 200,
    autocomplete: "off",
    props: { value: initial },
  });
  const form = h(
    "form",
    { class: "inline-form" },
    h("label", null, h("span", { class: "visually-hidden" }, label), input),
    h("button", { type: "submit", class: "button primary" }, submitLabel),
  );
  input.placeholder = label;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name) return;
    void onSubmit(name).then(() => {
      input.value = "";
    });
  });
  return form;
}

export function playlistsView(app: App): View {
  const list = h("ul", { class: "playlist-list", "aria-label": "Playlists" });
  const create = nameForm("New playlist name", "Create", async (name) => {
    try {
      const playlist = await api.createPlaylist(name);
      await app.refreshPlaylists();
      app.toast(`Created “${playlist.name}”`);
    } catch (error) {
      app.toast(errorText(error), "error");
    }
  });
  const el = h(
    "section",
    { class: "view", "aria-labelledby": "view-title" },
    viewHeader("Playlists", "Your own running orders"),
    create,
    list,
  );

  const render = (): void => {
    const playlists = app.playlists;
    if (!playlists.length) {
      mount(
        list,
        emptyState(
          "No playlists yet",
          "Create one here, then add tracks with the + beside them.",
          "playlist",
        ),
      );
      return;
    }
    mount(
      list,
      playlists.map((p) =>
        h(
          "li",
          null,
          h(
            "a",
            { href: `#/playlists/${p.id}`, class: "playlist-link" },
            h("span", { class: "playlist-icon", "aria-hidden": "true" }, icon("playlist")),
            h("span", { class: "playlist-name" }, p.name),
            h("span", { class: "playlist-count" }, fmt.plural(p.track_ids.length, "track")),
          ),
        ),
      ),
    );
  };
  mount(list, loading("Loading playlists"));
  void app.refreshPlaylists().then(render);
  const off = app.onLibraryChanged(render);
  return { el, title: "Playlists", dispose: off };
}

async function tracksOf(playlist: Playlist): Promise<Track[]> {
  const tracks: Track[] = [];
  const ids = playlist.track_ids;
  for (let i = 0; i < ids.length; i += 16) {
    const batch = await Promise.all(
      ids.slice(i, i + 16).map((id) => api.track(id).catch(() => null)),
    );
    tracks.push(...batch.filter((t): t is Track => t !== null));
  }
  return tracks;
}

export function playlistView(app: App, param: string | undefined): View {
  const id = Number(param);
  const el = h(
    "section",
    { class: "view", "aria-labelledby": "view-title" },
    loading("Loading the playlist"),
  );
  let playlist: Playlist | null = null;
  let tracks: Track[] = [];
  const table = new TrackTable(app, {
    label: "Tracks of the playlist",
    onRemove: (_track, index) => void removeAt(index),
  });

  async function removeAt(index: number): Promise<void> {
    if (!playlist) return;
    const ids = tracks.map((t) => t.id);
    ids.splice(index, 1);
    try {
      playlist = await api.changePlaylist(playlist.id, { track_ids: ids });
      await app.refreshPlaylists();
      await load();
    } catch (error) {
      app.toast(errorText(error), "error");
    }
  }

  async function rename(): Promise<void> {
    if (!playlist) return;
    const current = playlist;
    const form = nameForm(
      "Playlist name",
      "Rename",
      async (name) => {
        try {
          playlist = await api.changePlaylist(current.id, { name });
          await app.refreshPlaylists();
          await load();
        } catch (error) {
          app.toast(errorText(error), "error");
        }
      },
      current.name,
    );
    el.querySelector(".view-header")?.after(form);
    form.querySelector("input")?.focus();
  }

  async function remove(): Promise<void> {
    if (
      !playlist ||
      !window.confirm(`Delete the playlist “${playlist.name}”? Its tracks stay in the library.`)
    )
      return;
    try {
      await api.deletePlaylist(playlist.id);
      await app.refreshPlaylists();
      app.toast(`Deleted “${playlist.name}”`);
      app.navigate("#/playlists");
    } catch (error) {
      app.toast(errorText(error), "error");
    }
  }

  async function load(): Promise<void> {
    try {
      playlist = await api.playlist(id);
      tracks = await tracksOf(playlist);
      table.setTracks(tracks);
      const total = tracks.reduce((sum, t) => sum + t.duration_s, 0);
      mount(
        el,
        viewHeader(
          playlist.name,
          `Playlist · ${fmt.plural(tracks.length, "track")} · ${fmt.duration(total)}`,
          button("Play", () => void app.player.playList(tracks, 0), {
            icon: "play",
            kind: "primary",
            extra: { disabled: !tracks.length },
          }),
          button("Rename", () => void rename()),
          button("Delete", () => void remove(), { icon: "trash", kind: "danger" }),
        ),
        tracks.length
          ? table.el
          : emptyState(
              "This playlist is empty",
              "Add tracks with the + beside them in the library.",
              "playlist",
            ),
      );
    } catch (error) {
      mount(el, emptyState("This playlist could not be loaded", errorText(error), "playlist"));
    }
  }
  void load();
  return {
    el,
    title: "Playlist",
    dispose: () => table.dispose(),
  };
}
