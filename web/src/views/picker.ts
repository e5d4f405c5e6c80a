// "Add to playlist": a dialog listing the playlists, with a field to make a new one.

import { api } from "../api";
import type { Playlist, Track } from "../api";
import type { App } from "../context";
import { errorText } from "../context";
import { h } from "../dom";
import * as fmt from "../format";
import { icon } from "../icons";
import { nameForm } from "./playlists";

export function openPlaylistPicker(app: App, tracks: Track[]): void {
  if (!tracks.length) return;
  const what =
    tracks.length === 1 && tracks[0]
      ? `“${fmt.trackTitle(tracks[0])}”`
      : fmt.plural(tracks.length, "track");
  const dialog = h("dialog", { class: "picker", "aria-labelledby": "picker-title" });
  const ids = tracks.map((t) => t.id);

  const add = async (playlist: Playlist): Promise<void> => {
    try {
      await api.changePlaylist(playlist.id, { append: ids });
      await app.refreshPlaylists();
      app.toast(`Added ${what} to “${playlist.name}”`);
      dialog.close();
    } catch (error) {
      app.toast(errorText(error), "error");
    }
  };

  const create = nameForm("New playlist name", "Create and add", async (name) => {
    try {
      const playlist = await api.createPlaylist(name, ids);
      await app.refreshPlaylists();
      app.toast(`Created “${playlist.name}” with ${what}`);
      dialog.close();
    } catch (error) {
      app.toast(errorText(error), "error");
    }
  });

  dialog.append(
    h(
      "div",
      { class: "dialog-head" },
      h("h2", { id: "picker-title" }, `Add ${what} to…`),
      h(
        "button",
        {
          type: "button",
          class: "icon-button close",
          "aria-label": "Close",
          on: { click: () => dialog.close() },
        },
        icon("close"),
      ),
    ),
    app.playlists.length
      ? h(
          "ul",
          { class: "picker-list" },
          app.playlists.map((playlist) =>
            h(
              "li",
              null,
              h(
                "button",
                { type: "button", class: "picker-item", on: { click: () => void add(playlist) } },
                icon("playlist"),
                h("span", null, playlist.name),
                h(
                  "span",
                  { class: "playlist-count" },
                  fmt.plural(playlist.track_ids.length, "track"),
                ),
              ),
            ),
          ),
        )
      : h("p", { class: "subtitle" }, "No playlists yet: name a new one."),
    create,
  );
  dialog.addEventListener("close", () => dialog.remove());
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  document.body.append(dialog);
  dialog.showModal();
}
