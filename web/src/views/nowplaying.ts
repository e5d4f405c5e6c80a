// The now-playing panel: the cover, the master preview (A/B, target or a custom loudness,
// strength), the live loudness meter and spectrum, and the queue.

import { api } from "../api";
import {
  CUSTOM_LUFS_MAX,
  CUSTOM_LUFS_MIN,
  CUSTOM_LUFS_STEP,
  CUSTOM_TARGET,
  validCustomLufs,
} from "../audio/player";
import type { App } from "../context";
import { debounce, h, mount } from "../dom";
import * as fmt from "../format";
import { icon } from "../icons";
import { cover, vinyl } from "./cover";
import { SpectrumView } from "./spectrum";

const METER_FLOOR = -48;
const METER_TOP = 0;
const METER_MS = 100;

function meterPercent(value: number): number {
  return (
    ((Math.max(METER_FLOOR, Math.min(METER_TOP, value)) - METER_FLOOR) /
      (METER_TOP - METER_FLOOR)) *
    100
  );
}

export function nowPlayingPanel(app: App): HTMLElement {
  const player = app.player;

  // --- the track ---
  const art = h("div", { class: "np-art" });
  const title = h("h2", { class: "np-title", id: "np-title" }, "Nothing playing");
  const subtitle = h("p", { class: "np-subtitle" }, "Pick an album or a track to start.");
  const favourite = h(
    "button",
    {
      type: "button",
      class: "icon-button np-favourite",
      "aria-pressed": "false",
      "aria-label": "Add to favourites",
      disabled: true,
    },
    icon("heart"),
  );
  favourite.addEventListener("click", () => {
    const track = player.current;
    if (track) void app.toggleFavourite(track);
  });

  // --- master preview ---
  const previewSwitch = h(
    "button",
    {
      type: "button",
      role: "switch",
      class: "switch",
      id: "preview-switch",
      "aria-checked": "false",
      "aria-labelledby": "preview-label",
    },
    h("span", { class: "switch-thumb", "aria-hidden": "true" }),
  );
  previewSwitch.addEventListener(
    "click",
    () => void player.setPreview({ enabled: !player.preview.enabled }),
  );
  const sideButton = (side: "original" | "mastered", letter: string, label: string) =>
    h(
      "button",
      {
        type: "button",
        class: `ab-button ab-${side}`,
        "aria-pressed": "false",
        dataset: { side },
        on: { click: () => void player.setAudible(side) },
      },
      h("span", { class: "ab-letter", "aria-hidden": "true" }, letter),
      h("span", null, label),
    );
  const originalButton = sideButton("original", "A", "Original");
  const masteredButton = sideButton("mastered", "B", "Mastered");
  const targetSelect = h("select", { id: "preview-target" });
  targetSelect.addEventListener(
    "change",
    () => void player.setPreview({ target: targetSelect.value }),
  );
  // A custom target: its loudness, shown while "Custom" is the target.
  const lufsInput = h("input", {
    type: "number",
    id: "preview-lufs",
    min: CUSTOM_LUFS_MIN,
    max: CUSTOM_LUFS_MAX,
    step: CUSTOM_LUFS_STEP,
    inputmode: "decimal",
    "aria-describedby": "preview-lufs-help",
    props: { value: String(player.preview.lufs) },
  });
  const lufsField = h(
    "div",
    { class: "field preview-lufs", hidden: true },
    h("label", { for: "preview-lufs" }, "Preview loudness (LUFS)"),
    lufsInput,
    h(
      "span",
      { id: "preview-lufs-help", class: "visually-hidden" },
      `From ${CUSTOM_LUFS_MIN} to ${CUSTOM_LUFS_MAX} LUFS, under a −1 dBTP ceiling`,
    ),
  );
  /** Apply the typed loudness when it is one the server takes (while typing: a pause first). */
  const applyLufs = (final: boolean): void => {
    const value = Number(lufsInput.value);
    const valid = lufsInput.value.trim() !== "" && validCustomLufs(value);
    lufsInput.setAttribute("aria-invalid", String(!valid));
    if (valid) {
      void player.setPreview({ lufs: value });
    } else if (final) {
      app.toast(
        `A custom loudness lies between ${fmt.negative(CUSTOM_LUFS_MIN, 0)} and ${fmt.negative(CUSTOM_LUFS_MAX, 0)} LUFS`,
        "error",
      );
      lufsInput.value = String(player.preview.lufs);
      lufsInput.setAttribute("aria-invalid", "false");
    }
  };
  const applyLufsSoon = debounce(() => applyLufs(false), 700);
  lufsInput.addEventListener("input", applyLufsSoon);
  lufsInput.addEventListener("change", () => applyLufs(true));
  const strengthOutput = h("output", { for: "preview-strength", class: "strength-value" }, "100%");
  const strength = h("input", {
    type: "range",
    id: "preview-strength",
    min: 0,
    max: 100,
    step: 5,
    props: { value: "100" },
  });
  const applyStrength = debounce(
    (value: number) => void player.setPreview({ strength: value }),
    350,
  );
  strength.addEventListener("input", () => {
    strengthOutput.textContent = `${strength.value}%`;
    applyStrength(Number(strength.value) / 100);
  });
  const planInfo = h("p", { class: "plan-info", "aria-live": "polite" });
  const busy = h("span", { class: "spinner small", "aria-hidden": "true", hidden: true });

  // --- meter and spectrum ---
  const meterValue = h("span", { class: "meter-value idle" }, "−∞");
  const meterFill = h("div", { class: "meter-fill" });
  const meterTarget = h("div", { class: "meter-target", "aria-hidden": "true" });
  const momentary = h("span", null, "–");
  const meter = h(
    "div",
    {
      class: "meter",
      id: "loudness-meter",
      role: "meter",
      "aria-label": "Short-term loudness",
      "aria-valuemin": METER_FLOOR,
      "aria-valuemax": METER_TOP,
      "aria-valuenow": METER_FLOOR,
      "aria-valuetext": "silent",
    },
    h(
      "div",
      { class: "meter-readout" },
      meterValue,
      h("span", { class: "meter-unit" }, "LUFS"),
      h("span", { class: "meter-kind" }, "short-term · 3 s"),
    ),
    h("div", { class: "meter-bar" }, meterFill, meterTarget),
    h(
      "div",
      { class: "meter-scale", "aria-hidden": "true" },
      [-48, -36, -24, -12, 0].map((v) =>
        h("span", { style: { left: `${meterPercent(v)}%` } }, v === 0 ? "0" : fmt.negative(v, 0)),
      ),
    ),
    h("p", { class: "meter-sub" }, "Momentary ", momentary, " · K-weighted, BS.1770"),
  );
  const canvas = h("canvas", {
    class: "spectrum",
    role: "img",
    "aria-label": "Spectrum of what is playing, 20 Hz to 20 kHz",
  });
  const spectrum = new SpectrumView(canvas);

  // --- queue ---
  const queue = h("ol", { class: "queue", "aria-label": "Queue" });
  const queueCount = h("span", { class: "count" });

  const panel = h(
    "div",
    { class: "np-inner" },
    h("div", { class: "np-head" }, art, h("div", { class: "np-text" }, title, subtitle), favourite),
    h(
      "section",
      { class: "card master-card", "aria-labelledby": "preview-label" },
      h(
        "div",
        { class: "card-head" },
        h("h3", { id: "preview-label" }, icon("master"), "Master preview"),
        busy,
        previewSwitch,
      ),
      h(
        "div",
        { class: "ab", role: "group", "aria-label": "Listen to" },
        originalButton,
        masteredButton,
      ),
      h(
        "p",
        { class: "hint" },
        "Level-matched and in sync: A/B switches instantly at the same position.",
      ),
      h(
        "div",
        { class: "preview-fields" },
        h("label", { class: "field" }, h("span", null, "Target"), targetSelect),
        h(
          "div",
          { class: "field" },
          h("label", { for: "preview-strength" }, "Strength"),
          h("div", { class: "range-row" }, strength, strengthOutput),
        ),
        lufsField,
      ),
      planInfo,
    ),
    h(
      "section",
      { class: "card meter-card", "aria-label": "Loudness and spectrum" },
      meter,
      canvas,
    ),
    h(
      "section",
      { class: "card queue-card", "aria-labelledby": "queue-title" },
      h("div", { class: "card-head" }, h("h3", { id: "queue-title" }, "Queue"), queueCount),
      queue,
    ),
  );

  let shownTrack: number | null | undefined;

  function renderTrack(): void {
    const track = player.current;
    if ((track?.id ?? null) !== shownTrack) {
      shownTrack = track?.id ?? null;
      const sleeve = track?.album ?? (track ? fmt.trackTitle(track) : "");
      mount(
        art,
        track ? cover({ albumId: null, hasCover: false, title: sleeve }, "l") : vinyl("l"),
      );
      const albumId = track?.album_id ?? null;
      if (track && albumId !== null) {
        api
          .album(albumId)
          .then((album) => {
            if (album.has_cover && shownTrack === track.id) {
              mount(art, cover({ albumId, hasCover: true, title: sleeve }, "l"));
            }
          })
          .catch(() => undefined);
      }
    }
    title.textContent = track ? fmt.trackTitle(track) : "Nothing playing";
    subtitle.textContent = track
      ? [track.artist, track.album].filter(Boolean).join(" — ")
      : "Pick an album or a track to start.";
    favourite.disabled = !track;
    favourite.setAttribute("aria-pressed", String(track?.favourite ?? false));
    favourite.classList.toggle("on", track?.favourite ?? false);
    favourite.setAttribute(
      "aria-label",
      track?.favourite ? "Remove from favourites" : "Add to favourites",
    );
  }

  function renderPreview(): void {
    const { enabled, target, strength: value, lufs } = player.preview;
    previewSwitch.setAttribute("aria-checked", String(enabled));
    const audible = player.audible;
    const previewing = enabled && player.current !== null;
    originalButton.setAttribute("aria-pressed", String(previewing && audible === "original"));
    masteredButton.setAttribute("aria-pressed", String(previewing && audible === "mastered"));
    panel.dataset.audible = audible;
    panel.dataset.preview = String(enabled);
    if (targetSelect.options.length !== app.presets.length + 1) {
      mount(targetSelect, [
        ...app.presets.map((p) =>
          h(
            "option",
            { value: p.name, title: p.description },
            `${fmt.presetName(p.name)} · ${fmt.lufs(p.lufs)}`,
          ),
        ),
        h(
          "option",
          { value: CUSTOM_TARGET, title: "A loudness of your own, under a −1 dBTP ceiling" },
          "Custom LUFS",
        ),
      ]);
    }
    targetSelect.value = target;
    const custom = target === CUSTOM_TARGET;
    lufsField.hidden = !custom;
    if (document.activeElement !== lufsInput) {
      lufsInput.value = String(lufs);
      lufsInput.setAttribute("aria-invalid", "false");
    }
    if (document.activeElement !== strength) {
      strength.value = String(Math.round(value * 100));
      strengthOutput.textContent = `${strength.value}%`;
    }
    busy.hidden = !player.busy;
    const aim = custom ? lufs : app.presets.find((p) => p.name === target)?.lufs;
    meterTarget.hidden = aim === undefined;
    if (aim !== undefined) meterTarget.style.left = `${meterPercent(aim)}%`;
  }

  function renderPlan(): void {
    const plan = player.plan;
    if (!player.preview.enabled) {
      planInfo.textContent = "Off: you hear the file as stored. Switch on to hear it mastered.";
    } else if (!plan) {
      planInfo.textContent = player.current
        ? "Planning the master…"
        : "Starts with the next track you play.";
    } else {
      const from = fmt.lufs(plan.input_lufs);
      const to = fmt.lufs(plan.predicted_lufs);
      planInfo.textContent = `${from} → ${to} · gain ${fmt.db(plan.gain_db)}${plan.target_reachable ? "" : " · target out of reach under the ceiling"}`;
    }
  }

  function renderQueue(): void {
    const items = player.queue.slice(0, 300);
    queueCount.textContent = player.queue.length ? fmt.plural(player.queue.length, "track") : "";
    if (!items.length) {
      mount(queue, h("li", { class: "queue-empty" }, "The queue is empty."));
      return;
    }
    mount(
      queue,
      items.map((track, index) =>
        h(
          "li",
          {
            class: index === player.index ? "current" : undefined,
            "aria-current": index === player.index ? "true" : undefined,
          },
          h(
            "button",
            { type: "button", class: "queue-play", on: { click: () => void player.jump(index) } },
            h("span", { class: "queue-title" }, fmt.trackTitle(track)),
            h("span", { class: "queue-artist" }, track.artist ?? ""),
          ),
          h("span", { class: "queue-time" }, fmt.time(track.duration_s)),
          index === player.index
            ? null
            : h(
                "button",
                {
                  type: "button",
                  class: "icon-button",
                  "aria-label": `Remove ${fmt.trackTitle(track)} from the queue`,
                  on: { click: () => player.remove(index) },
                },
                icon("close"),
              ),
        ),
      ),
    );
  }

  // The meter reads 10 times a second, the spectrum every frame, only while the panel shows.
  let lastMeter = 0;
  function frame(now: number): void {
    requestAnimationFrame(frame);
    if (!panel.isConnected || panel.offsetParent === null || document.hidden) return;
    spectrum.draw(player.analyser, player.playing);
    if (now - lastMeter < METER_MS) return;
    lastMeter = now;
    const reading = player.graphNow?.meter?.read();
    const short = reading?.shortTerm ?? -Infinity;
    const live = Number.isFinite(short);
    meterValue.textContent = live ? fmt.negative(short) : "−∞";
    meterValue.classList.toggle("idle", !live);
    momentary.textContent =
      reading && Number.isFinite(reading.momentary) ? fmt.lufs(reading.momentary) : "–";
    meterFill.style.width = `${live ? meterPercent(short) : 0}%`;
    meter.setAttribute("aria-valuenow", String(live ? Math.round(short * 10) / 10 : METER_FLOOR));
    meter.setAttribute("aria-valuetext", live ? `${fmt.lufs(short)} short-term` : "silent");
    meter.dataset.shortTerm = live ? short.toFixed(2) : "";
  }
  requestAnimationFrame(frame);

  player.on("state", () => {
    renderTrack();
    renderPreview();
    renderQueue();
    renderPlan();
  });
  player.on("plan", renderPlan);
  app.onFavouriteChanged(renderTrack);
  renderTrack();
  renderPreview();
  renderQueue();
  renderPlan();
  return panel;
}
