// The track table: play, favourite, queue, add to a playlist, sort by column. Rows are one
// delegated listener on the table, keyed by the row's index.

import type { Track, TrackOrder } from "../api";
import type { App } from "../context";
import { h, srOnly } from "../dom";
import * as fmt from "../format";
import { icon } from "../icons";

export interface TrackTableOptions {
  label: string;
  /** The order shown, and what a click on a sortable header asks for. */
  order?: TrackOrder;
  onSort?: (order: TrackOrder) => void;
  /** Number rows by the tags' track number (an album) instead of the position. */
  albumNumbers?: boolean;
  showAlbum?: boolean;
  onRemove?: (track: Track, index: number) => void;
}

interface Column {
  key: string;
  label: string;
  className: string;
  order?: TrackOrder;
}

const ACTIONS = ["play", "favourite", "queue", "playlist", "remove"] as const;
type Action = (typeof ACTIONS)[number];

export class TrackTable {
  readonly el: HTMLElement;
  private readonly body: HTMLTableSectionElement;
  private tracks: Track[] = [];
  private readonly unsubscribe: (() => void)[];

  constructor(
    private readonly app: App,
    private readonly options: TrackTableOptions,
  ) {
    const columns: Column[] = [
      { key: "number", label: "#", className: "col-num" },
      { key: "title", label: "Title", className: "col-title", order: "title" },
      ...(options.showAlbum === false
        ? []
        : [{ key: "album", label: "Album", className: "col-album" }]),
      { key: "loudness", label: "Loudness", className: "col-lufs", order: "loudness" },
      { key: "duration", label: "Time", className: "col-time", order: "duration" },
      { key: "actions", label: "Actions", className: "col-actions" },
    ];
    this.body = h("tbody");
    const table = h(
      "table",
      { class: "tracks", "aria-label": options.label },
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          columns.map((c) => this.header(c)),
        ),
      ),
      this.body,
    );
    table.addEventListener("click", (event) => this.onClick(event));
    table.addEventListener("dblclick", (event) => {
      const row = (event.target as Element).closest<HTMLTableRowElement>("tr[data-index]");
      if (row && !(event.target as Element).closest("button")) this.play(Number(row.dataset.index));
    });
    this.el = h("div", { class: "table-wrap" }, table);
    this.unsubscribe = [
      app.player.on("state", () => this.markPlaying()),
      app.onFavouriteChanged((track) => this.update(track)),
    ];
  }

  dispose(): void {
    for (const off of this.unsubscribe) off();
  }

  get length(): number {
    return this.tracks.length;
  }

  setTracks(tracks: Track[]): void {
    this.tracks = [...tracks];
    this.body.replaceChildren(...this.tracks.map((t, i) => this.row(t, i)));
    this.markPlaying();
  }

  append(tracks: Track[]): void {
    const start = this.tracks.length;
    this.tracks.push(...tracks);
    this.body.append(...tracks.map((t, i) => this.row(t, start + i)));
    this.markPlaying();
  }

  /** Show a changed record of a track (a favourite, say) in place. */
  update(track: Track): void {
    this.tracks.forEach((t, i) => {
      if (t.id !== track.id) return;
      this.tracks[i] = track;
      this.body.querySelector(`tr[data-index="${i}"]`)?.replaceWith(this.row(track, i));
    });
    this.markPlaying();
  }

  private header(column: Column): HTMLTableCellElement {
    const { order, onSort } = this.options;
    if (!column.order || !onSort) {
      const label = column.key === "actions" ? srOnly(column.label) : column.label;
      return h("th", { scope: "col", class: column.className }, label);
    }
    const active = order === column.order;
    const direction = column.order === "added" ? "descending" : "ascending";
    return h(
      "th",
      { scope: "col", class: column.className, "aria-sort": active ? direction : "none" },
      h(
        "button",
        {
          type: "button",
          class: `sort${active ? " active" : ""}`,
          on: { click: () => column.order && onSort(column.order) },
        },
        column.label,
        h("span", { class: "sort-mark", "aria-hidden": "true" }, active ? "▲" : ""),
        srOnly(active ? ", sorted" : `, sort by ${column.label.toLowerCase()}`),
      ),
    );
  }

  private row(track: Track, index: number): HTMLTableRowElement {
    const title = fmt.trackTitle(track);
    const number = this.options.albumNumbers && track.track_number ? track.track_number : index + 1;
    const button = (
      action: Action,
      label: string,
      content: Node,
      extra: Record<string, unknown> = {},
    ) =>
      h(
        "button",
        {
          type: "button",
          class: `icon-button act-${action}`,
          "aria-label": label,
          title: label,
          dataset: { action },
          ...extra,
        },
        content,
      );
    return h(
      "tr",
      { dataset: { index, trackId: track.id }, class: track.missing ? "missing" : undefined },
      h(
        "td",
        { class: "col-num" },
        h("span", { class: "num" }, number),
        h("span", { class: "eq", "aria-hidden": "true" }, h("i"), h("i"), h("i")),
        button("play", `Play ${title}`, icon("play")),
      ),
      h(
        "td",
        { class: "col-title" },
        h(
          "button",
          { type: "button", class: "title-button", dataset: { action: "play" } },
          h("span", { class: "track-title" }, title),
          h("span", { class: "track-artist" }, track.artist ?? "Unknown artist"),
        ),
      ),
      this.options.showAlbum === false ? null : h("td", { class: "col-album" }, track.album ?? ""),
      h(
        "td",
        { class: "col-lufs", title: "Integrated loudness (BS.1770)" },
        fmt.lufs(track.integrated_lufs, ""),
      ),
      h("td", { class: "col-time" }, fmt.time(track.duration_s)),
      h(
        "td",
        { class: "col-actions" },
        button(
          "favourite",
          track.favourite ? `Remove ${title} from favourites` : `Add ${title} to favourites`,
          icon("heart"),
          {
            "aria-pressed": String(track.favourite),
            class: `icon-button act-favourite${track.favourite ? " on" : ""}`,
          },
        ),
        button("queue", `Add ${title} to the queue`, icon("queue")),
        button("playlist", `Add ${title} to a playlist`, icon("plus")),
        this.options.onRemove
          ? button("remove", `Remove ${title} from this playlist`, icon("close"))
          : null,
      ),
    );
  }

  private onClick(event: MouseEvent): void {
    const target = (event.target as Element).closest<HTMLElement>("[data-action]");
    const row = target?.closest<HTMLTableRowElement>("tr[data-index]");
    if (!target || !row) return;
    const index = Number(row.dataset.index);
    const track = this.tracks[index];
    if (!track) return;
    switch (target.dataset.action as Action) {
      case "play":
        this.play(index);
        break;
      case "favourite":
        void this.app.toggleFavourite(track);
        break;
      case "queue":
        this.app.player.enqueue([track]);
        this.app.toast(`Added “${fmt.trackTitle(track)}” to the queue`);
        break;
      case "playlist":
        this.app.addToPlaylist([track]);
        break;
      case "remove":
        this.options.onRemove?.(track, index);
        break;
    }
  }

  private play(index: number): void {
    const playable = this.tracks.filter((t) => !t.missing);
    const track = this.tracks[index];
    if (!track || track.missing) {
      this.app.toast("This track's file is missing: rescan the library", "error");
      return;
    }
    void this.app.player.playList(playable, playable.indexOf(track));
  }

  private markPlaying(): void {
    const player = this.app.player;
    const id = player.current?.id;
    for (const row of this.body.rows) {
      const current = id !== undefined && Number(row.dataset.trackId) === id;
      row.classList.toggle("current", current);
      row.classList.toggle("playing", current && player.playing);
      if (current) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    }
  }
}
