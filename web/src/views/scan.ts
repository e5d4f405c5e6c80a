// The library's figures and the scan's live progress (the hub's `scan` topic), with a rescan
// button.

import { api } from "../api";
import type { ScanState } from "../api";
import type { App } from "../context";
import { errorText } from "../context";
import { debounce, h } from "../dom";
import * as fmt from "../format";
import { icon } from "../icons";
import type { LiveSocket } from "../ws";

function describe(scan: ScanState): { text: string; fraction: number | null } {
  switch (scan.state) {
    case "running":
      return { text: `Scanning · ${fmt.plural(scan.files_seen, "file")} seen`, fraction: null };
    case "analysing": {
      const total = scan.analysed + scan.analysis_pending;
      return {
        text: `Analysing loudness · ${scan.analysed}/${total}`,
        fraction: total ? scan.analysed / total : null,
      };
    }
    case "failed":
      return { text: `The scan failed: ${scan.error ?? "unknown error"}`, fraction: null };
    default:
      return { text: "", fraction: null };
  }
}

export function scanStatus(app: App, live: LiveSocket): HTMLElement {
  const figures = h("p", { class: "library-figures" }, "");
  const progressText = h("p", { class: "scan-text" });
  const fill = h("div", { class: "progress-fill" });
  const bar = h("div", { class: "progress thin", hidden: true }, fill);
  const rescan = h(
    "button",
    {
      type: "button",
      class: "icon-button",
      "aria-label": "Rescan the library folders",
      title: "Rescan the library",
    },
    icon("refresh"),
  );
  const el = h(
    "section",
    { class: "scan-status", "aria-label": "Library status" },
    h("div", { class: "scan-row" }, figures, rescan),
    h("div", { role: "status", "aria-live": "polite" }, progressText, bar),
  );

  const show = (scan: ScanState): void => {
    const { text, fraction } = describe(scan);
    progressText.textContent = text;
    const busy = scan.state === "running" || scan.state === "analysing";
    bar.hidden = !busy;
    bar.classList.toggle("indeterminate", fraction === null);
    fill.style.width = fraction === null ? "" : `${Math.round(fraction * 100)}%`;
    rescan.disabled = busy;
    el.dataset.state = scan.state;
  };
  const refreshFigures = debounce(() => {
    api
      .stats()
      .then((stats) => {
        figures.textContent = `${fmt.plural(stats.tracks, "track")} · ${fmt.plural(stats.albums, "album")} · ${fmt.duration(stats.total_duration_s)}`;
      })
      .catch(() => undefined);
  }, 300);

  rescan.addEventListener("click", () => {
    api.startScan().then(show, (error: unknown) => app.toast(errorText(error), "error"));
  });
  live.on("scan.progress", (data) => show(data as ScanState));
  live.on("scan.finished", (data) => {
    show(data as ScanState);
    refreshFigures();
  });
  live.on("library.changed", refreshFigures);
  live.on(
    "reconnected",
    () =>
      void api
        .scan()
        .then(show)
        .catch(() => undefined),
  );
  void api
    .scan()
    .then(show)
    .catch(() => undefined);
  refreshFigures();
  return el;
}
