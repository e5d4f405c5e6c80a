// The mastering jobs the page knows: loaded once, then kept current by the hub's `jobs` events
// (job.queued / progress / finished / failed / cancelled), reloaded after a reconnection.
// Uploads in flight are listed too, before the server has a job for them.

import { api } from "./api";
import type { Job, JobState, UploadOptions } from "./api";
import { Emitter } from "./emitter";
import type { LiveSocket } from "./ws";

interface JobEvent {
  job_id: string;
  state: JobState;
  stage: string | null;
  fraction: number;
  eta_s: number | null;
  error?: string | null;
}

export interface Upload {
  key: string;
  name: string;
  fraction: number;
  error: string | null;
}

const EVENTS = ["job.queued", "job.progress", "job.finished", "job.failed", "job.cancelled"];

export class JobsStore extends Emitter<{ change: void }> {
  private readonly jobs = new Map<string, Job>();
  readonly uploads = new Map<string, Upload>();
  loaded = false;
  private uploadCount = 0;

  constructor(live: LiveSocket) {
    super();
    for (const type of EVENTS) live.on(type, (data) => this.apply(data as JobEvent));
    live.on("reconnected", () => void this.load());
  }

  /** Newest first. */
  get list(): Job[] {
    return [...this.jobs.values()].sort((a, b) => b.submitted_at.localeCompare(a.submitted_at));
  }

  get active(): number {
    return (
      this.list.filter((j) => j.state === "queued" || j.state === "running").length +
      this.uploads.size
    );
  }

  async load(): Promise<void> {
    const jobs = await api.jobs(100);
    for (const job of jobs) this.jobs.set(job.id, { ...this.jobs.get(job.id), ...job });
    this.loaded = true;
    this.changed();
  }

  async upload(file: File, options: UploadOptions): Promise<Job | null> {
    const key = `upload-${++this.uploadCount}`;
    const upload: Upload = { key, name: file.name, fraction: 0, error: null };
    this.uploads.set(key, upload);
    this.changed();
    try {
      const job = await api.upload(file, options, (fraction) => {
        upload.fraction = fraction;
        this.changed();
      });
      // Events may have come first (a fast job): keep the furthest state.
      const known = this.jobs.get(job.id);
      this.jobs.set(job.id, known && known.state !== "queued" ? { ...job, ...known } : job);
      return job;
    } finally {
      this.uploads.delete(key);
      this.changed();
    }
  }

  async cancel(id: string): Promise<void> {
    const job = await api.cancelJob(id);
    this.jobs.set(job.id, job);
    this.changed();
  }

  private apply(event: JobEvent): void {
    const job = this.jobs.get(event.job_id);
    if (!job) {
      void api.job(event.job_id).then((fresh) => {
        const known = this.jobs.get(fresh.id);
        this.jobs.set(fresh.id, known && order(known.state) > order(fresh.state) ? known : fresh);
        this.changed();
      });
      return;
    }
    const done = event.state !== "queued" && event.state !== "running";
    this.jobs.set(job.id, {
      ...job,
      state: event.state,
      stage: event.stage,
      fraction: done && event.state === "done" ? 1 : event.fraction,
      eta_s: event.eta_s,
      error: event.error ?? job.error,
    });
    this.changed();
    if (done) {
      // The record has the final times and names.
      void api
        .job(job.id)
        .then((fresh) => {
          this.jobs.set(fresh.id, fresh);
          this.changed();
        })
        .catch(() => undefined);
    }
  }

  private changed(): void {
    this.emit("change", undefined);
  }
}

function order(state: JobState): number {
  return state === "queued" ? 0 : state === "running" ? 1 : 2;
}
