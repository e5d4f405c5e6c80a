// tonearm's web player: builds the page, connects the live socket and routes between views.

import "./styles/base.css";
import "./styles/layout.css";
import "./styles/library.css";
import "./styles/master.css";
import "./styles/now-playing.css";
import "./styles/responsive.css";
import { api, urls } from "./api";
import type { Track } from "./api";
import { Player } from "./audio/player";
import type { App, View, ViewFactory } from "./context";
import { errorText } from "./context";
import { $, debounce, h, mount } from "./dom";
import { Emitter } from "./emitter";
import * as fmt from "./format";
import { icon } from "./icons";
import type { IconName } from "./icons";
import { JobsStore } from "./jobs-store";
import { installShortcuts, SHORTCUTS } from "./keyboard";
import { installMediaSession } from "./media-session";
import { albumView, albumsView } from "./views/albums";
import { artistView, artistsView } from "./views/artists";
import { jobsView } from "./views/jobs";
import { nowPlayingPanel } from "./views/nowplaying";
import { playerBar } from "./views/playerbar";
import { openPlaylistPicker } from "./views/picker";
import { playlistView, playlistsView } from "./views/playlists";
import { scanStatus } from "./views/scan";
import { favouritesView, tracksView } from "./views/tracks";
import { LiveSocket } from "./ws";

interface Signals extends Record<string, unknown> {
  library: void;
  search: string;
  favourite: Track;
}

class Signal extends Emitter<Signals> {
  send<K extends keyof Signals>(type: K, value: Signals[K]): void {
    this.emit(type, value);
  }
}

const NAV: { route: string; label: string; icon: IconName }[] = [
  { route: "albums", label: "Albums", icon: "album" },
  { route: "artists", label: "Artists", icon: "artist" },
  { route: "tracks", label: "Tracks", icon: "tracks" },
  { route: "favourites", label: "Favourites", icon: "heart" },
  { route: "playlists", label: "Playlists", icon: "playlist" },
  { route: "jobs", label: "Master", icon: "master" },
  { route: "now", label: "Now playing", icon: "now" },
];

async function boot(): Promise<void> {
  const root = $("#app");
  const presets = await api.presets().catch(() => []);
  const signals = new Signal();
  const audioHost = h("div", { class: "audio-elements", hidden: true });
  const player = new Player(audioHost);
  const live = new LiveSocket(urls.socket, ["jobs", "scan", "library"]);
  const jobs = new JobsStore(live);
  const toasts = h("div", { class: "toasts", role: "status", "aria-live": "polite" });

  const app: App = {
    player,
    live,
    presets,
    playlists: [],
    query: "",
    toast(message, kind = "info") {
      const toast = h(
        "div",
        { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : undefined },
        message,
      );
      toasts.append(toast);
      window.setTimeout(() => toast.classList.add("leaving"), kind === "error" ? 6000 : 3000);
      window.setTimeout(() => toast.remove(), kind === "error" ? 6400 : 3400);
    },
    navigate(hash) {
      location.hash = hash;
    },
    async refreshPlaylists() {
      try {
        app.playlists = await api.playlists();
      } catch (error) {
        app.toast(errorText(error), "error");
      }
      renderPlaylistLinks();
    },
    addToPlaylist(tracks) {
      openPlaylistPicker(app, tracks);
    },
    async toggleFavourite(track) {
      try {
        const changed = await api.setFavourite(track.id, !track.favourite);
        player.refreshTrack(changed);
        signals.send("favourite", changed);
      } catch (error) {
        app.toast(errorText(error), "error");
      }
    },
    onFavouriteChanged: (listener) => signals.on("favourite", listener),
    onLibraryChanged: (listener) => signals.on("library", listener),
    onSearch: (listener) => signals.on("search", listener),
  };

  // --- the shell ---
  const navLinks = NAV.map((item) =>
    h(
      "a",
      {
        href: `#/${item.route}`,
        class: `nav-link nav-${item.route}`,
        dataset: { route: item.route },
      },
      icon(item.icon),
      h("span", null, item.label),
      item.route === "jobs" ? h("span", { class: "nav-badge", hidden: true }) : null,
    ),
  );
  const playlistLinks = h("ul", { class: "side-playlists", "aria-label": "Your playlists" });
  const search = h("input", {
    type: "search",
    id: "search",
    placeholder: "Search the library",
    autocomplete: "off",
    spellcheck: "false",
    "aria-label": "Search the library",
  });
  const connection = h(
    "span",
    {
      class: "connection",
      role: "status",
      "aria-live": "polite",
      dataset: { status: "connecting" },
    },
    h("span", { class: "dot", "aria-hidden": "true" }),
    h("span", { class: "connection-text" }, "Connecting"),
  );
  const viewHost = h("div", { class: "view-host" });
  const nowPlaying = h(
    "aside",
    { class: "now-playing", id: "now-playing", "aria-label": "Now playing" },
    nowPlayingPanel(app),
  );

  mount(
    root,
    h(
      "aside",
      { class: "sidebar", "aria-label": "Library" },
      h(
        "a",
        { class: "brand", href: "#/albums", "aria-label": "tonearm, home" },
        h("span", { class: "brand-mark", "aria-hidden": "true" }),
        h("span", { class: "brand-name" }, "tonearm"),
      ),
      h("nav", { class: "nav", "aria-label": "Main" }, navLinks),
      h(
        "section",
        { class: "side-section", "aria-labelledby": "side-playlists-title" },
        h("h2", { id: "side-playlists-title" }, "Playlists"),
        playlistLinks,
      ),
      scanStatus(app, live),
      h(
        "details",
        { class: "shortcuts" },
        h("summary", null, "Keyboard shortcuts"),
        h(
          "dl",
          null,
          SHORTCUTS.map(([keys, action]) => [
            h("dt", null, h("kbd", null, keys)),
            h("dd", null, action),
          ]),
        ),
      ),
    ),
    h(
      "main",
      { id: "main", class: "main", tabindex: "-1" },
      h(
        "div",
        { class: "topbar" },
        h("label", { class: "search" }, icon("search"), search),
        connection,
      ),
      viewHost,
    ),
    nowPlaying,
    h("footer", { class: "player-bar", "aria-label": "Player" }, playerBar(app)),
    toasts,
    audioHost,
  );

  function renderPlaylistLinks(): void {
    mount(
      playlistLinks,
      app.playlists.length
        ? app.playlists.map((p) =>
            h(
              "li",
              null,
              h(
                "a",
                {
                  href: `#/playlists/${p.id}`,
                  class: "side-link",
                  dataset: { route: `playlists/${p.id}` },
                },
                p.name,
              ),
            ),
          )
        : h(
            "li",
            { class: "side-empty" },
            h("a", { href: "#/playlists", class: "side-link" }, "Create a playlist"),
          ),
    );
    markNav();
  }

  // --- routing ---
  const routes: Record<string, ViewFactory> = {
    albums: (a, p) => (p ? albumView(a, p) : albumsView(a)),
    artists: (a, p) => (p ? artistView(a, p) : artistsView(a)),
    tracks: (a) => tracksView(a),
    favourites: (a) => favouritesView(a),
    playlists: (a, p) => (p ? playlistView(a, p) : playlistsView(a)),
    jobs: (a) => jobsView(a, jobs),
    now: () => ({ el: h("div", { class: "now-spacer" }), title: "Now playing" }),
  };
  let current: View | null = null;
  let currentRoute = "";

  function markNav(): void {
    const [name] = currentRoute.split("/");
    for (const link of root.querySelectorAll<HTMLAnchorElement>("[data-route]")) {
      const route = link.dataset.route ?? "";
      const active =
        route === currentRoute || (route === name && !link.classList.contains("side-link"));
      if (active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  function route(): void {
    const path = location.hash.replace(/^#\/?/, "") || "albums";
    const [name = "albums", param] = path.split("/");
    const factory = routes[name] ?? routes.albums;
    if (!factory) return;
    const previous = currentRoute;
    currentRoute = routes[name] ? path : "albums";
    current?.dispose?.();
    current = factory(app, param);
    mount(viewHost, current.el);
    document.body.dataset.route = name;
    document.title = `${current.title} · tonearm`;
    markNav();
    if (previous && previous !== currentRoute && document.activeElement !== search) {
      viewHost.scrollTop = 0;
      const heading = current.el.querySelector<HTMLElement>("#view-title");
      (heading ?? $("#main")).focus({ preventScroll: true });
    }
  }
  window.addEventListener("hashchange", route);

  // --- search as you type ---
  const searchNow = debounce(() => signals.send("search", app.query), 150);
  search.addEventListener("input", () => {
    app.query = search.value;
    if (!location.hash.startsWith("#/tracks")) app.navigate("#/tracks");
    else searchNow();
  });

  // --- live updates ---
  const libraryChanged = debounce(() => signals.send("library", undefined), 400);
  live.on("library.changed", (data) => {
    const change = (data ?? {}) as { reason?: string; playlist_id?: number };
    if (change.playlist_id !== undefined) void app.refreshPlaylists().then(libraryChanged);
    else if (change.reason) libraryChanged();
  });
  live.on("reconnected", libraryChanged);
  live.onStatus((status) => {
    connection.dataset.status = status;
    $(".connection-text", connection).textContent =
      status === "open" ? "Live" : status === "connecting" ? "Connecting" : "Reconnecting";
  });
  jobs.on("change", () => {
    const badge = root.querySelector<HTMLElement>(".nav-jobs .nav-badge");
    if (!badge) return;
    const active = jobs.active;
    badge.hidden = active === 0;
    badge.textContent = String(active);
    badge.setAttribute("aria-label", `${fmt.plural(active, "job")} running`);
  });

  player.on("error", (message) => app.toast(message, "error"));
  installShortcuts(player, () => {
    search.focus();
    search.select();
  });
  installMediaSession(player);

  if (!presets.length) app.toast("The mastering presets could not be loaded", "error");
  void app.refreshPlaylists();
  jobs.load().catch(() => undefined); // the navigation's badge counts running jobs
  live.start();
  route();
}

void boot();
