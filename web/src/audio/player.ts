// The player: a queue of tracks, the deck playing now and the next one, loaded ahead.
//
// Gapless: 20 s before a track ends the next track's deck is loaded (and, previewing the master,
// its plan warmed); in the last second its start is scheduled for the moment the current one
// ends, so the tracks of an album follow each other without a gap where the browser allows.
//
// Master preview: the deck plays the mastered stream and the gain-matched original together
// (deck.ts); the A/B switch is a gain change. Changing the target (a preset, or "custom" with a
// loudness of its own), the custom loudness or the strength warms the new plan while the old one
// keeps playing, then moves to the new streams at the same position.

import { api } from "../api";
import type { PlanSummary, Track } from "../api";
import { Emitter } from "../emitter";
import { Deck } from "./deck";
import type { DeckSource, Side } from "./deck";
import { AudioGraph } from "./graph";

export interface PreviewSettings {
  enabled: boolean;
  /** A preset's name, or `CUSTOM_TARGET`. */
  target: string;
  /** The custom target's loudness (LUFS; kept while a preset is chosen). */
  lufs: number;
  strength: number;
  audible: Side;
}

/** The target that is no preset: the server masters to `lufs` under its default ceiling. */
export const CUSTOM_TARGET = "custom";
export const CUSTOM_LUFS_MIN = -40;
export const CUSTOM_LUFS_MAX = -5;
export const CUSTOM_LUFS_STEP = 0.5;
const DEFAULT_CUSTOM_LUFS = -14;

/** A loudness the server takes for a custom target. */
export function validCustomLufs(value: number): boolean {
  return Number.isFinite(value) && value >= CUSTOM_LUFS_MIN && value <= CUSTOM_LUFS_MAX;
}

interface PlayerEvents extends Record<string, unknown> {
  /** Track, queue, play/pause, preview or volume changed. */
  state: void;
  /** The position moved (about 5 times a second while playing). */
  time: number;
  volume: void;
  error: string;
  plan: PlanSummary | null;
}

const TICK_MS = 200;
const PRELOAD_S = 20;
const HANDOFF_WINDOW_S = 1;
/** Start the next element this early: its first samples take about this long to come out. */
const HANDOFF_LEAD_S = 0.03;
const RESTART_THRESHOLD_S = 3;
const COUNT_PLAY_AFTER_S = 30;
const SETTINGS_KEY = "tonearm.player";

interface Stored {
  preview: PreviewSettings;
  volume: number;
  muted: boolean;
}

function load(): Stored {
  const defaults: Stored = {
    preview: {
      enabled: false,
      target: "spotify",
      lufs: DEFAULT_CUSTOM_LUFS,
      strength: 1,
      audible: "mastered",
    },
    volume: 0.8,
    muted: false,
  };
  try {
    const stored = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}") as Partial<Stored>;
    const preview = { ...defaults.preview, ...stored.preview };
    if (typeof preview.lufs !== "number" || !validCustomLufs(preview.lufs)) {
      preview.lufs = DEFAULT_CUSTOM_LUFS;
    }
    return {
      preview,
      volume: typeof stored.volume === "number" ? stored.volume : defaults.volume,
      muted: stored.muted === true,
    };
  } catch {
    return defaults;
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class Player extends Emitter<PlayerEvents> {
  queue: Track[] = [];
  index = -1;
  preview: PreviewSettings;
  volume: number;
  muted: boolean;
  plan: PlanSummary | null = null;
  /** A track is loading (or a preview is being prepared). */
  busy = false;
  buffering = false;

  private deck: Deck | null = null;
  private upcoming: { deck: Deck; ready: Promise<boolean> } | null = null;
  private graph: AudioGraph | null = null;
  private generation = 0;
  private ticker: number | undefined;
  private handoffTimer: number | undefined;
  private unbind: (() => void)[] = [];
  private counted = false;

  constructor(private readonly host: HTMLElement) {
    super();
    const stored = load();
    this.preview = stored.preview;
    this.volume = stored.volume;
    this.muted = stored.muted;
  }

  get current(): Track | null {
    return this.queue[this.index] ?? null;
  }

  get position(): number {
    return this.deck?.position ?? 0;
  }

  get duration(): number {
    return this.deck?.duration ?? this.current?.duration_s ?? 0;
  }

  get playing(): boolean {
    return this.deck?.playing ?? false;
  }

  /** Which stream is heard: the mastered one only while previewing the master. */
  get audible(): Side {
    return this.deck?.isPreview ? this.deck.audible : "original";
  }

  get analyser(): AnalyserNode | null {
    return this.graph?.analyser ?? null;
  }

  get graphNow(): AudioGraph | null {
    return this.graph;
  }

  // --- the queue ----------------------------------------------------------------------------

  async playList(tracks: Track[], start = 0): Promise<void> {
    this.queue = [...tracks];
    await this.start(start, 0);
  }

  enqueue(tracks: Track[]): void {
    this.queue.push(...tracks);
    this.changed();
  }

  playNext(track: Track): void {
    this.queue.splice(this.index + 1, 0, track);
    this.dropUpcoming();
    this.changed();
  }

  async jump(index: number): Promise<void> {
    if (index >= 0 && index < this.queue.length) await this.start(index, 0);
  }

  remove(index: number): void {
    if (index === this.index) return; // the playing track stays (skip it instead)
    this.queue.splice(index, 1);
    if (index < this.index) this.index -= 1;
    if (index === this.index + 1) this.dropUpcoming();
    this.changed();
  }

  /** Replace a track's record everywhere in the queue (a favourite changed, say). */
  refreshTrack(track: Track): void {
    this.queue = this.queue.map((t) => (t.id === track.id ? track : t));
    this.changed();
  }

  // --- transport ----------------------------------------------------------------------------

  async toggle(): Promise<void> {
    if (this.playing) this.pause();
    else await this.play();
  }

  async play(): Promise<void> {
    if (!this.deck) {
      if (this.queue.length) await this.start(Math.max(0, this.index), 0);
      return;
    }
    await this.ensureGraph();
    await this.deck.play().catch((error: unknown) => this.fail(error));
    this.startTicker();
    this.changed();
  }

  pause(): void {
    this.deck?.pause();
    this.stopTicker();
    this.changed();
  }

  seek(seconds: number): void {
    if (!this.deck) return;
    this.deck.seek(seconds);
    this.clearHandoff();
    this.graph?.meter?.reset();
    this.emit("time", this.position);
  }

  seekBy(seconds: number): void {
    this.seek(this.position + seconds);
  }

  async next(): Promise<void> {
    if (this.index + 1 < this.queue.length) await this.start(this.index + 1, 0);
  }

  async previous(): Promise<void> {
    if (this.position > RESTART_THRESHOLD_S || this.index <= 0) this.seek(0);
    else await this.start(this.index - 1, 0);
  }

  setVolume(value: number): void {
    this.volume = Math.max(0, Math.min(1, value));
    if (this.volume > 0) this.muted = false;
    this.applyVolume();
  }

  toggleMute(): void {
    this.muted = !this.muted;
    this.applyVolume();
  }

  // --- master preview -------------------------------------------------------------------------

  async setPreview(change: Partial<Omit<PreviewSettings, "audible">>): Promise<void> {
    const before = this.preview;
    this.preview = { ...before, ...change };
    this.save();
    const after = this.preview;
    const sameTarget =
      before.target === after.target &&
      (after.target !== CUSTOM_TARGET || before.lufs === after.lufs);
    const same =
      before.enabled === after.enabled &&
      (!after.enabled || (sameTarget && before.strength === after.strength));
    if (same) {
      this.changed();
      return;
    }
    this.dropUpcoming();
    if (!this.preview.enabled) this.setPlan(null);
    this.changed();
    if (this.deck && !(await this.reload())) {
      this.preview = before; // the old streams play on: show what is heard
      this.save();
      this.changed();
    }
  }

  /** A/B: hear the mastered stream or the level-matched original (instant, same position). */
  async setAudible(side: Side): Promise<void> {
    this.preview = { ...this.preview, audible: side };
    this.save();
    if (this.deck?.isPreview) {
      this.deck.setAudible(side);
      this.upcoming?.deck.setAudible(side);
      this.changed();
    } else if (side === "mastered") {
      await this.setPreview({ enabled: true });
    } else {
      this.changed();
    }
  }

  // --- loading --------------------------------------------------------------------------------

  private source(): DeckSource {
    const { enabled, target, strength, lufs } = this.preview;
    if (!enabled) return { kind: "file" };
    return target === CUSTOM_TARGET
      ? { kind: "preview", target, strength, lufs }
      : { kind: "preview", target, strength };
  }

  private async ensureGraph(): Promise<AudioGraph> {
    if (!this.graph) {
      this.graph = await AudioGraph.get();
      this.applyVolume();
    }
    await this.graph.resume();
    return this.graph;
  }

  /** Warm the plan of a preview (the streams then start at once); null for a file deck. */
  private async warm(track: Track, source: DeckSource): Promise<PlanSummary | null> {
    if (source.kind !== "preview") return null;
    return api.plan(track.id, source.target, source.strength, source.lufs);
  }

  /** Play queue entry `index` from `at` seconds. */
  private async start(index: number, at: number): Promise<void> {
    const track = this.queue[index];
    if (!track) return;
    const generation = ++this.generation;
    this.index = index;
    this.counted = false;
    this.clearHandoff();
    this.busy = true;
    this.changed();
    const graph = await this.ensureGraph();
    const reuse = this.upcoming?.deck.track.id === track.id && at === 0 ? this.upcoming : null;
    if (!reuse) this.dropUpcoming();
    this.upcoming = null;
    this.retire(this.deck, true);
    this.deck = null;
    let source = this.source();
    let deck = reuse?.deck ?? null;
    try {
      if (!reuse) {
        let plan: PlanSummary | null = null;
        try {
          plan = await this.warm(track, source);
        } catch (error) {
          // No master to preview (still being analysed, rate-limited…): play the file.
          this.fail(new Error(`The master preview is unavailable: ${errorMessage(error)}`));
          source = { kind: "file" };
        }
        if (generation !== this.generation) return;
        this.setPlan(plan);
        deck = new Deck(graph, track, source, this.preview.audible, this.host);
        await deck.prepare(at);
      } else if (!(await reuse.ready)) {
        throw new Error("the track could not be loaded");
      }
      if (generation !== this.generation || !deck) {
        deck?.dispose();
        return;
      }
      this.attach(deck);
      graph.meter?.reset();
      await deck.play();
      this.startTicker();
    } catch (error) {
      if (generation === this.generation) this.fail(error);
      if (deck && deck !== this.deck) deck.dispose();
    } finally {
      if (generation === this.generation) {
        this.busy = false;
        this.changed();
      }
    }
  }

  /** The same track at the same position from a new source (preview switched or retargeted):
   * the old deck plays on while the new plan is computed. */
  private async reload(): Promise<boolean> {
    const old = this.deck;
    const track = this.current;
    if (!old || !track) return true;
    const generation = ++this.generation;
    const wasPlaying = old.playing;
    const source = this.source();
    this.busy = true;
    this.changed();
    let deck: Deck | null = null;
    try {
      const plan = await this.warm(track, source);
      if (generation !== this.generation) return true;
      this.setPlan(plan);
      const graph = await this.ensureGraph();
      deck = new Deck(graph, track, source, this.preview.audible, this.host);
      await deck.prepare(old.position);
      if (generation !== this.generation) {
        deck.dispose();
        return true;
      }
      // The old deck went on meanwhile: catch up with it, then swap.
      const position = old.position;
      deck.seek(position);
      await deck.prepare(position);
      if (generation !== this.generation) {
        deck.dispose();
        return true;
      }
      this.retire(old, true);
      this.attach(deck);
      if (wasPlaying) await deck.play();
      return true;
    } catch (error) {
      if (generation === this.generation) this.fail(error);
      if (deck && deck !== this.deck) deck.dispose();
      return generation !== this.generation;
    } finally {
      if (generation === this.generation) {
        this.busy = false;
        this.changed();
      }
    }
  }

  private attach(deck: Deck): void {
    this.deck = deck;
    this.unbind = [
      deck.on("ended", () => void this.advance()),
      deck.on("error", (message) => this.emit("error", message)),
      deck.on("buffering", (value) => {
        this.buffering = value;
        this.changed();
      }),
    ];
  }

  /** Stop listening to a deck; dispose it now or when it has played out. */
  private retire(deck: Deck | null, now: boolean): void {
    if (!deck) return;
    for (const undo of this.unbind) undo();
    this.unbind = [];
    if (now || !deck.playing) {
      deck.dispose();
      return;
    }
    const off = deck.on("ended", () => {
      off();
      deck.dispose();
    });
    window.setTimeout(() => deck.dispose(), (HANDOFF_WINDOW_S + 2) * 1000);
  }

  /** The current track ended (or is about to): the next starts on time, the old plays out. */
  private async advance(): Promise<void> {
    this.clearHandoff();
    const nextIndex = this.index + 1;
    const upcoming = this.upcoming;
    if (nextIndex >= this.queue.length) {
      if (!this.deck?.playing) {
        this.stopTicker();
        this.changed();
      }
      return;
    }
    if (!upcoming) {
      await this.start(nextIndex, 0);
      return;
    }
    const generation = ++this.generation;
    this.upcoming = null;
    if (!(await upcoming.ready) || generation !== this.generation) {
      upcoming.deck.dispose();
      if (generation === this.generation) await this.start(nextIndex, 0);
      return;
    }
    this.retire(this.deck, false);
    this.index = nextIndex;
    this.counted = false;
    this.attach(upcoming.deck);
    this.graph?.meter?.reset();
    await upcoming.deck.play().catch((error: unknown) => this.fail(error));
    this.startTicker();
    this.changed();
  }

  private tick(): void {
    const deck = this.deck;
    if (!deck) return;
    const position = deck.position;
    this.emit("time", position);
    const track = deck.track;
    if (!this.counted && (position > COUNT_PLAY_AFTER_S || position > deck.duration / 2)) {
      this.counted = true;
      api.recordPlay(track.id).catch(() => undefined);
    }
    const remaining = deck.duration - position;
    const next = this.queue[this.index + 1];
    if (!deck.playing || !next) return;
    if (remaining < PRELOAD_S && !this.upcoming) this.preload(next);
    if (remaining < HANDOFF_WINDOW_S && this.handoffTimer === undefined && this.upcoming) {
      const delay = Math.max(0, remaining - HANDOFF_LEAD_S) * 1000;
      this.handoffTimer = window.setTimeout(() => void this.advance(), delay);
    }
  }

  private preload(track: Track): void {
    const graph = this.graph;
    if (!graph) return;
    const source = this.source();
    const deck = new Deck(graph, track, source, this.preview.audible, this.host);
    const ready = this.warm(track, source)
      .then(() => deck.prepare(0))
      .then(
        () => true,
        () => false,
      );
    this.upcoming = { deck, ready };
  }

  private dropUpcoming(): void {
    this.upcoming?.deck.dispose();
    this.upcoming = null;
    this.clearHandoff();
  }

  private clearHandoff(): void {
    window.clearTimeout(this.handoffTimer);
    this.handoffTimer = undefined;
  }

  private startTicker(): void {
    if (this.ticker === undefined) this.ticker = window.setInterval(() => this.tick(), TICK_MS);
  }

  private stopTicker(): void {
    window.clearInterval(this.ticker);
    this.ticker = undefined;
    this.emit("time", this.position);
  }

  private applyVolume(): void {
    this.graph?.setVolume(this.muted ? 0 : this.volume ** 2); // a perceptual curve
    this.save();
    this.emit("volume", undefined);
  }

  private setPlan(plan: PlanSummary | null): void {
    this.plan = plan;
    this.emit("plan", plan);
  }

  private fail(error: unknown): void {
    if (error instanceof DOMException && error.name === "AbortError") return;
    this.emit("error", errorMessage(error));
  }

  private save(): void {
    const stored: Stored = { preview: this.preview, volume: this.volume, muted: this.muted };
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(stored));
  }

  private changed(): void {
    this.emit("state", undefined);
  }
}
