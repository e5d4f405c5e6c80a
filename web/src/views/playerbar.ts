// The transport bar: the track, previous / play-pause / next, the seek bar, the A/B badge and
// the volume. The position follows the player on every animation frame while it plays.

import type { App } from "../context";
import { h } from "../dom";
import * as fmt from "../format";
import { icon } from "../icons";

export function playerBar(app: App): HTMLElement {
  const player = app.player;
  const title = h("span", { class: "pb-title" }, "Nothing playing");
  const artist = h("span", { class: "pb-artist" }, "");
  const trackLink = h(
    "a",
    { href: "#/now", class: "pb-track-link", "aria-label": "Open now playing" },
    h("span", { class: "pb-disc", "aria-hidden": "true" }, icon("album")),
    h("span", { class: "pb-text" }, title, artist),
  );

  const transport = (name: "previous" | "next", label: string, action: () => void) =>
    h(
      "button",
      {
        type: "button",
        class: `icon-button pb-${name}`,
        "aria-label": label,
        title: label,
        on: { click: action },
      },
      icon(name),
    );
  const previous = transport("previous", "Previous track", () => void player.previous());
  const next = transport("next", "Next track", () => void player.next());
  const playButton = h(
    "button",
    {
      type: "button",
      class: "play-button",
      id: "play-button",
      "aria-label": "Play",
      title: "Play (space)",
    },
    icon("play"),
  );
  playButton.addEventListener("click", () => void player.toggle());

  const elapsed = h("span", { class: "time", "aria-hidden": "true" }, fmt.time(0));
  const total = h("span", { class: "time", "aria-hidden": "true" }, fmt.time(null));
  const seek = h("input", {
    type: "range",
    id: "seek",
    class: "seek",
    min: 0,
    max: 1,
    step: 0.1,
    "aria-label": "Seek",
    props: { value: "0" },
    disabled: true,
  });
  let dragging = false;
  seek.addEventListener("input", () => {
    dragging = true;
    elapsed.textContent = fmt.time(Number(seek.value));
    paintSeek();
  });
  seek.addEventListener("change", () => {
    dragging = false;
    player.seek(Number(seek.value));
  });

  const abBadge = h(
    "button",
    {
      type: "button",
      class: "ab-badge",
      id: "ab-badge",
      "aria-label": "Switch between the original and the master",
      title: "A/B (B key)",
    },
    "A/B",
  );
  abBadge.addEventListener(
    "click",
    () => void player.setAudible(player.audible === "mastered" ? "original" : "mastered"),
  );
  const muteButton = h(
    "button",
    { type: "button", class: "icon-button", "aria-label": "Mute", title: "Mute (M)" },
    icon("volume"),
  );
  muteButton.addEventListener("click", () => player.toggleMute());
  const volume = h("input", {
    type: "range",
    class: "volume",
    min: 0,
    max: 1,
    step: 0.01,
    "aria-label": "Volume",
    props: { value: String(player.volume) },
  });
  volume.addEventListener("input", () => player.setVolume(Number(volume.value)));
  const buffering = h("span", { class: "spinner small", "aria-hidden": "true", hidden: true });

  const bar = h(
    "div",
    { class: "pb-inner" },
    h("div", { class: "pb-track" }, trackLink),
    h(
      "div",
      { class: "pb-center" },
      h("div", { class: "pb-buttons" }, previous, playButton, next, buffering),
      h("div", { class: "pb-seek" }, elapsed, seek, total),
    ),
    h("div", { class: "pb-right" }, abBadge, muteButton, volume),
  );

  function paintSeek(): void {
    const max = Number(seek.max) || 1;
    seek.style.setProperty("--fill", `${(Number(seek.value) / max) * 100}%`);
  }

  function renderTime(): void {
    const duration = player.duration;
    const position = player.position;
    if (!dragging) {
      seek.max = String(duration > 0 ? duration : 1);
      seek.value = String(position);
      elapsed.textContent = fmt.time(position);
      paintSeek();
    }
    total.textContent = fmt.time(duration || null);
    seek.setAttribute("aria-valuetext", `${fmt.time(position)} of ${fmt.time(duration)}`);
  }

  function render(): void {
    const track = player.current;
    title.textContent = track ? fmt.trackTitle(track) : "Nothing playing";
    artist.textContent = track?.artist ?? "";
    const playing = player.playing;
    playButton.replaceChildren(icon(playing ? "pause" : "play"));
    playButton.setAttribute("aria-label", playing ? "Pause" : "Play");
    playButton.title = playing ? "Pause (space)" : "Play (space)";
    bar.dataset.state = playing ? "playing" : track ? "paused" : "idle";
    seek.disabled = !track;
    previous.disabled = !track;
    next.disabled = player.index + 1 >= player.queue.length;
    buffering.hidden = !(player.busy || player.buffering);
    const previewing = player.preview.enabled && !!track;
    abBadge.hidden = !previewing;
    abBadge.textContent = player.audible === "mastered" ? "B · Mastered" : "A · Original";
    abBadge.dataset.side = player.audible;
    abBadge.setAttribute("aria-pressed", String(player.audible === "mastered"));
    renderTime();
  }

  function renderVolume(): void {
    muteButton.replaceChildren(icon(player.muted || player.volume === 0 ? "mute" : "volume"));
    muteButton.setAttribute("aria-label", player.muted ? "Unmute" : "Mute");
    if (document.activeElement !== volume) volume.value = String(player.muted ? 0 : player.volume);
    volume.style.setProperty("--fill", `${(player.muted ? 0 : player.volume) * 100}%`);
  }

  let frameRequested = false;
  const follow = (): void => {
    frameRequested = false;
    renderTime();
    if (player.playing) {
      frameRequested = true;
      requestAnimationFrame(follow);
    }
  };
  player.on("state", () => {
    render();
    if (player.playing && !frameRequested) {
      frameRequested = true;
      requestAnimationFrame(follow);
    }
  });
  player.on("time", renderTime);
  player.on("volume", renderVolume);
  render();
  renderVolume();
  return bar;
}
