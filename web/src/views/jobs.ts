// Mastering jobs: drop a mix (or choose one) to master it, follow its progress live, download
// the master and read its report with the plot.

import { api, urls } from "../api";
import type { Job, JobReport } from "../api";
import type { App, View } from "../context";
import { errorText } from "../context";
import { h, mount } from "../dom";
import * as fmt from "../format";
import { icon } from "../icons";
import type { JobsStore, Upload } from "../jobs-store";
import { emptyState, viewHeader } from "./common";

const STATE_LABELS: Record<Job["state"], string> = {
  queued: "Queued",
  running: "Mastering",
  done: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};
const STAGE_LABELS: Record<string, string> = {
  analyse: "Analysing",
  plan: "Planning",
  render: "Rendering",
  verify: "Verifying",
};

function progressBar(fraction: number, label: string): HTMLElement {
  const value = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
  return h(
    "div",
    {
      class: "progress",
      role: "progressbar",
      "aria-label": label,
      "aria-valuemin": 0,
      "aria-valuemax": 100,
      "aria-valuenow": value,
    },
    h("div", { class: "progress-fill", style: { width: `${value}%` } }),
  );
}

function doneText(job: Job): string {
  if (job.cached) return "Done: the same mix was mastered before (from the cache)";
  if (!job.started_at || !job.finished_at) return "Done";
  const seconds = (Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000;
  return `Mastered in ${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
}

function targetText(app: App, job: Job): string {
  const preset = app.presets.find((p) => p.name === job.target);
  const name = fmt.presetName(job.target);
  if (job.lufs !== null) return `${fmt.lufs(job.lufs)} (custom) · ${name}'s ceiling`;
  return preset ? `${name} · ${fmt.lufs(preset.lufs)}` : name;
}

function jobCard(app: App, store: JobsStore, job: Job): HTMLElement {
  const running = job.state === "queued" || job.state === "running";
  const stage = job.stage ? (STAGE_LABELS[job.stage] ?? job.stage) : null;
  const status =
    job.state === "running"
      ? `${stage ?? "Mastering"} · ${fmt.percent(job.fraction)}${job.eta_s ? ` · ${Math.ceil(job.eta_s)} s left` : ""}`
      : job.state === "done"
        ? doneText(job)
        : STATE_LABELS[job.state];
  return h(
    "li",
    { class: `job-card state-${job.state}`, dataset: { jobId: job.id, state: job.state } },
    h(
      "div",
      { class: "job-main" },
      h(
        "span",
        { class: "job-icon", "aria-hidden": "true" },
        icon(job.state === "done" ? "master" : "tracks"),
      ),
      h(
        "div",
        { class: "job-text" },
        h("span", { class: "job-name" }, job.input_name),
        h("span", { class: "job-meta" }, targetText(app, job)),
      ),
      h("span", { class: `badge badge-${job.state}` }, STATE_LABELS[job.state]),
    ),
    running || job.state === "done"
      ? progressBar(job.fraction, `Mastering ${job.input_name}`)
      : null,
    h(
      "p",
      { class: "job-status", "aria-live": "polite" },
      job.state === "failed" ? (job.error ?? "Failed") : status,
    ),
    h(
      "div",
      { class: "job-actions" },
      job.state === "done"
        ? [
            h(
              "a",
              {
                class: "button primary",
                href: urls.result(job.id),
                download: "",
                "aria-label": `Download the master of ${job.input_name}`,
              },
              icon("download"),
              h("span", null, "Download"),
            ),
            h(
              "button",
              { type: "button", class: "button ghost", on: { click: () => void openReport(job) } },
              icon("report"),
              h("span", null, "Report"),
            ),
          ]
        : null,
      running
        ? h(
            "button",
            {
              type: "button",
              class: "button ghost",
              on: {
                click: () =>
                  store.cancel(job.id).catch((e: unknown) => app.toast(errorText(e), "error")),
              },
            },
            "Cancel",
          )
        : null,
    ),
  );
}

function uploadCard(upload: Upload): HTMLElement {
  return h(
    "li",
    { class: "job-card state-uploading", dataset: { state: "uploading" } },
    h(
      "div",
      { class: "job-main" },
      h("span", { class: "job-icon", "aria-hidden": "true" }, icon("upload")),
      h(
        "div",
        { class: "job-text" },
        h("span", { class: "job-name" }, upload.name),
        h("span", { class: "job-meta" }, "Uploading"),
      ),
      h("span", { class: "badge badge-queued" }, fmt.percent(upload.fraction)),
    ),
    progressBar(upload.fraction, `Uploading ${upload.name}`),
  );
}

function figureRow(label: string, before: string, after: string): HTMLElement {
  return h(
    "tr",
    null,
    h("th", { scope: "row" }, label),
    h("td", null, before),
    h("td", null, after),
  );
}

async function openReport(job: Job): Promise<void> {
  const dialog = h("dialog", { class: "report-dialog", "aria-labelledby": "report-title" });
  const close = h(
    "button",
    {
      type: "button",
      class: "icon-button close",
      "aria-label": "Close the report",
      on: { click: () => dialog.close() },
    },
    icon("close"),
  );
  dialog.addEventListener("close", () => dialog.remove());
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });
  mount(
    dialog,
    h(
      "div",
      { class: "dialog-head" },
      h("h2", { id: "report-title" }, `Report: ${job.input_name}`),
      close,
    ),
    h("p", null, "Loading…"),
  );
  document.body.append(dialog);
  dialog.showModal();
  let report: JobReport;
  try {
    report = await api.report(job.id);
  } catch (error) {
    mount(
      dialog,
      h("div", { class: "dialog-head" }, h("h2", { id: "report-title" }, "No report"), close),
      h("p", null, errorText(error)),
    );
    return;
  }
  const { input, output, target } = report;
  const limiter = report.limiter;
  const notes = [...new Set([...(report.notes ?? []), ...(report.plan?.notes ?? [])])];
  mount(
    dialog,
    h(
      "div",
      { class: "dialog-head" },
      h("h2", { id: "report-title" }, `Report: ${job.input_name}`),
      close,
    ),
    h(
      "p",
      { class: "subtitle" },
      [
        `${fmt.presetName(target.name)} target ${fmt.lufs(target.lufs)}, ceiling ${fmt.negative(target.ceiling_dbtp)} dBTP`,
        output.format,
        `mastered at ${report.realtime_factor.toFixed(0)}× real time`,
      ]
        .filter(Boolean)
        .join(" · "),
    ),
    h(
      "table",
      { class: "figures", "aria-label": "Before and after" },
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          h("th", null, h("span", { class: "visually-hidden" }, "Figure")),
          h("th", { scope: "col" }, "Mix"),
          h("th", { scope: "col" }, "Master"),
        ),
      ),
      h(
        "tbody",
        null,
        figureRow(
          "Integrated loudness",
          fmt.lufs(input.integrated_lufs),
          fmt.lufs(output.integrated_lufs),
        ),
        figureRow(
          "True peak",
          fmt.db(input.true_peak_dbtp, " dBTP"),
          fmt.db(output.true_peak_dbtp, " dBTP"),
        ),
        figureRow(
          "Loudness range",
          fmt.lufs(input.loudness_range_lu, " LU"),
          fmt.lufs(output.loudness_range_lu, " LU"),
        ),
      ),
    ),
    h(
      "dl",
      { class: "facts" },
      h("dt", null, "Gain"),
      h("dd", null, fmt.db(report.plan.gain_db)),
      h("dt", null, "Limiter"),
      h(
        "dd",
        null,
        limiter && limiter.max_gain_reduction_db > 0.05
          ? `${fmt.negative(-limiter.max_gain_reduction_db)} dB at most`
          : "not engaged",
      ),
      h("dt", null, "Off target by"),
      h(
        "dd",
        null,
        report.loudness_error_lu === null
          ? "–"
          : `${Math.abs(report.loudness_error_lu).toFixed(2)} LU`,
      ),
      h("dt", null, "Passes"),
      h("dd", null, String(report.render_passes)),
    ),
    notes.length
      ? h(
          "ul",
          { class: "notes" },
          notes.map((n) => h("li", null, n)),
        )
      : null,
    h(
      "figure",
      { class: "plot" },
      h("img", {
        src: urls.plot(job.id),
        alt: `Spectra of the mix and the master, the EQ curve, and short-term loudness over time for ${job.input_name}`,
        loading: "lazy",
      }),
      h("figcaption", null, "Spectra, EQ and short-term loudness (drawn on first view)"),
    ),
    h(
      "div",
      { class: "dialog-actions" },
      h(
        "a",
        { class: "button primary", href: urls.result(job.id), download: "" },
        icon("download"),
        h("span", null, "Download the master"),
      ),
    ),
  );
}

export function jobsView(app: App, store: JobsStore): View {
  const input = h("input", {
    type: "file",
    id: "master-file",
    class: "visually-hidden",
    accept: "audio/*,.wav,.flac,.aif,.aiff,.mp3,.ogg,.opus,.m4a",
    multiple: true,
  });
  const presetSelect = h(
    "select",
    { id: "job-target" },
    app.presets.map((p) =>
      h(
        "option",
        { value: p.name, title: p.description },
        `${fmt.presetName(p.name)} · ${fmt.negative(p.lufs, 0)} LUFS · ${fmt.negative(p.ceiling_dbtp, p.ceiling_dbtp % 1 ? 1 : 0)} dBTP`,
      ),
    ),
  );
  const lufsInput = h("input", {
    type: "number",
    id: "job-lufs",
    min: -40,
    max: -5,
    step: 0.5,
    placeholder: "the target's",
    inputmode: "decimal",
  });
  const dropzone = h(
    "div",
    { class: "dropzone", "aria-describedby": "drop-help" },
    icon("upload", "icon drop-icon"),
    h("p", { class: "drop-title" }, "Drop a mix here to master it"),
    h(
      "p",
      { id: "drop-help", class: "drop-help" },
      "WAV, FLAC, AIFF, MP3, OGG, Opus or M4A. A lossless mix comes back in its own format, a lossy one as WAV.",
    ),
    input,
    h(
      "label",
      { for: "master-file", class: "button primary file-button" },
      icon("plus"),
      h("span", null, "Choose a file"),
    ),
  );
  const list = h("ul", { class: "job-list", "aria-label": "Mastering jobs" });

  const submit = (files: Iterable<File>): void => {
    const lufsText = lufsInput.value.trim();
    const lufs = lufsText ? Number(lufsText) : undefined;
    if (lufs !== undefined && !(lufs >= -40 && lufs <= -5)) {
      app.toast("A custom loudness lies between −40 and −5 LUFS", "error");
      return;
    }
    for (const file of files) {
      store
        .upload(file, { target: presetSelect.value, lufs })
        .catch((error: unknown) => app.toast(`${file.name}: ${errorText(error)}`, "error"));
    }
  };

  input.addEventListener("change", () => {
    if (input.files?.length) submit(input.files);
    input.value = "";
  });
  let depth = 0;
  dropzone.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    dropzone.classList.add("over");
  });
  dropzone.addEventListener("dragover", (event) => {
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
  });
  dropzone.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) dropzone.classList.remove("over");
  });
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    dropzone.classList.remove("over");
    const files = event.dataTransfer?.files;
    if (files?.length) submit(files);
  });

  const render = (): void => {
    const uploads = [...store.uploads.values()].map(uploadCard);
    const jobs = store.list.map((job) => jobCard(app, store, job));
    if (!uploads.length && !jobs.length) {
      mount(
        list,
        store.loaded
          ? emptyState(
              "No jobs yet",
              "Masters you make here are listed with their reports.",
              "master",
            )
          : null,
      );
      return;
    }
    // Keep focus where it was when a card is rebuilt (progress changes often).
    const focused = document.activeElement;
    const focusKey =
      focused instanceof HTMLElement && list.contains(focused)
        ? [focused.closest<HTMLElement>("[data-job-id]")?.dataset.jobId, focused.textContent]
        : null;
    mount(list, uploads, jobs);
    if (focusKey?.[0]) {
      const card = list.querySelector(`[data-job-id="${focusKey[0]}"]`);
      const again = [...(card?.querySelectorAll<HTMLElement>("a,button") ?? [])].find(
        (e) => e.textContent === focusKey[1],
      );
      again?.focus();
    }
  };

  const el = h(
    "section",
    { class: "view", "aria-labelledby": "view-title" },
    viewHeader("Master", "Master a mix to a loudness target; progress arrives live."),
    h(
      "div",
      { class: "master-form" },
      dropzone,
      h(
        "div",
        { class: "master-options" },
        h("label", { class: "field" }, h("span", null, "Loudness target"), presetSelect),
        h("label", { class: "field" }, h("span", null, "Custom loudness (LUFS)"), lufsInput),
      ),
    ),
    h("h2", { class: "section-title" }, "Jobs"),
    list,
  );
  const off = store.on("change", render);
  render();
  if (!store.loaded)
    store
      .load()
      .catch((error: unknown) =>
        mount(list, emptyState("Jobs could not be loaded", errorText(error), "master")),
      );
  return { el, title: "Master", dispose: off };
}
