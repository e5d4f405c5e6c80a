// A deck plays one track: the file as stored, or, to preview the master, two streams in step:
// the mastered WAV and the original gain-matched to it (both from the server, the same length
// and rate). Both always play; only their gains differ, so switching A/B is a gain ramp: instant,
// level-matched, and the position is the position.
//
// The audible voice leads. The silent one follows: a small drift is pulled in with its playback
// rate (inaudible, it is silent), a large one (a seek, a stall) with a seek.

import { urls } from "../api";
import type { Track } from "../api";
import { Emitter } from "../emitter";
import type { AudioGraph, Voice } from "./graph";

export type Side = "original" | "mastered";
/** A preview's `lufs`: a custom loudness (with the target "custom"). */
export type DeckSource =
  { kind: "file" } | { kind: "preview"; target: string; strength: number; lufs?: number };

interface DeckEvents extends Record<string, unknown> {
  ended: void;
  error: string;
  buffering: boolean;
}

const SYNC_MS = 200;
const SEEK_DRIFT_S = 0.25;
const NUDGE_DRIFT_S = 0.015;
const MAX_NUDGE = 0.08;
const READY_TIMEOUT_MS = 60_000;

interface Lane {
  side: Side;
  voice: Voice;
}

function mediaError(element: HTMLAudioElement): string {
  const code = element.error?.code;
  if (code === MediaError.MEDIA_ERR_NETWORK) return "the stream was interrupted";
  if (code === MediaError.MEDIA_ERR_DECODE) return "the browser cannot decode this track";
  if (code === MediaError.MEDIA_ERR_SRC_NOT_SUPPORTED) {
    return "the browser cannot play this format (or the server refused the stream)";
  }
  return element.error?.message || "playback failed";
}

/** Resolves when `element` can play at its current position. */
function whenReady(element: HTMLAudioElement): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: string) => {
      window.clearTimeout(timer);
      for (const type of ["canplay", "seeked", "error"] as const) {
        element.removeEventListener(type, check);
      }
      if (error) reject(new Error(error));
      else resolve();
    };
    const check = () => {
      if (element.error) done(mediaError(element));
      else if (element.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA && !element.seeking) done();
    };
    const timer = window.setTimeout(
      () => done("the stream did not start in time"),
      READY_TIMEOUT_MS,
    );
    for (const type of ["canplay", "seeked", "error"] as const) {
      element.addEventListener(type, check);
    }
    check();
  });
}

export class Deck extends Emitter<DeckEvents> {
  private readonly lanes: Lane[];
  private audibleSide: Side;
  private syncTimer: number | undefined;
  private disposed = false;
  private endedSent = false;
  private readonly cleanup: (() => void)[] = [];

  constructor(
    private readonly graph: AudioGraph,
    readonly track: Track,
    readonly source: DeckSource,
    audible: Side,
    host: HTMLElement,
  ) {
    super();
    this.audibleSide = source.kind === "file" ? "original" : audible;
    const make = (side: Side, src: string): Lane => {
      const element = new Audio();
      element.preload = "auto";
      element.src = src;
      element.dataset.side = side;
      element.dataset.trackId = String(track.id);
      host.append(element);
      const level = side === this.audibleSide ? 1 : 0;
      return { side, voice: graph.voice(element, level) };
    };
    this.lanes =
      source.kind === "file"
        ? [make("original", urls.original(track.id))]
        : [
            make("mastered", urls.mastered(track.id, source.target, source.strength, source.lufs)),
            make("original", urls.matched(track.id, source.target, source.strength, source.lufs)),
          ];
    for (const { voice } of this.lanes) this.watch(voice.element);
  }

  get isPreview(): boolean {
    return this.source.kind === "preview";
  }

  get audible(): Side {
    return this.audibleSide;
  }

  private get leader(): HTMLAudioElement {
    const lane = this.lanes.find((l) => l.side === this.audibleSide) ?? this.lanes[0];
    if (!lane) throw new Error("a deck has at least one voice");
    return lane.voice.element;
  }

  private get followers(): HTMLAudioElement[] {
    const leader = this.leader;
    return this.lanes.map((l) => l.voice.element).filter((e) => e !== leader);
  }

  get position(): number {
    return this.leader.currentTime;
  }

  get duration(): number {
    const value = this.leader.duration;
    return Number.isFinite(value) && value > 0 ? value : this.track.duration_s;
  }

  get playing(): boolean {
    return !this.leader.paused && !this.leader.ended;
  }

  /** Load every voice and place it at `at` seconds; resolves when all can play there. */
  async prepare(at: number): Promise<void> {
    for (const { voice } of this.lanes) {
      if (at > 0) voice.element.currentTime = at;
    }
    await Promise.all(this.lanes.map(({ voice }) => whenReady(voice.element)));
  }

  async play(): Promise<void> {
    if (this.disposed) return;
    const at = this.leader.currentTime;
    const stray = this.followers.filter((f) => Math.abs(f.currentTime - at) > NUDGE_DRIFT_S);
    for (const follower of stray) follower.currentTime = at;
    await Promise.all(stray.map(whenReady));
    await Promise.all(this.lanes.map(({ voice }) => voice.element.play()));
    this.startSync();
  }

  pause(): void {
    for (const { voice } of this.lanes) voice.element.pause();
    this.stopSync();
  }

  seek(seconds: number): void {
    const at = Math.max(0, Math.min(seconds, this.duration - 0.05));
    for (const { voice } of this.lanes) {
      voice.element.currentTime = at;
      voice.element.playbackRate = 1;
    }
    this.endedSent = false;
  }

  /** Make `side` the audible one (a preview deck; a file deck has only the original). */
  setAudible(side: Side): void {
    if (!this.isPreview || side === this.audibleSide) return;
    this.audibleSide = side;
    for (const lane of this.lanes) this.graph.fade(lane.voice, lane.side === side ? 1 : 0);
    this.leader.playbackRate = 1;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.stopSync();
    for (const undo of this.cleanup) undo();
    for (const { voice } of this.lanes) {
      voice.element.pause();
      voice.element.removeAttribute("src");
      voice.element.load(); // aborts the download
      voice.disconnect();
      voice.element.remove();
    }
  }

  private watch(element: HTMLAudioElement): void {
    const isLeader = () => element === this.leader;
    const listeners: [keyof HTMLMediaElementEventMap, () => void][] = [
      [
        "ended",
        () => {
          if (isLeader() && !this.endedSent) {
            this.endedSent = true;
            this.stopSync();
            this.emit("ended", undefined);
          }
        },
      ],
      ["error", () => this.emit("error", mediaError(element))],
      ["waiting", () => isLeader() && this.emit("buffering", true)],
      ["playing", () => isLeader() && this.emit("buffering", false)],
    ];
    for (const [type, listener] of listeners) element.addEventListener(type, listener);
    this.cleanup.push(() => {
      for (const [type, listener] of listeners) element.removeEventListener(type, listener);
    });
  }

  private startSync(): void {
    this.stopSync();
    if (this.lanes.length > 1) this.syncTimer = window.setInterval(() => this.sync(), SYNC_MS);
  }

  private stopSync(): void {
    window.clearInterval(this.syncTimer);
    this.syncTimer = undefined;
  }

  /** Keep the silent voice on the audible one's position. */
  private sync(): void {
    const leader = this.leader;
    if (leader.paused || leader.seeking) return;
    for (const follower of this.followers) {
      if (follower.seeking) continue;
      if (follower.ended && this.duration - leader.currentTime < SEEK_DRIFT_S * 2) continue;
      const drift = follower.currentTime - leader.currentTime;
      if (Math.abs(drift) > SEEK_DRIFT_S || follower.ended) {
        follower.playbackRate = 1;
        follower.currentTime = leader.currentTime;
      } else if (Math.abs(drift) > NUDGE_DRIFT_S) {
        follower.playbackRate = 1 - Math.max(-MAX_NUDGE, Math.min(MAX_NUDGE, drift * 2));
      } else {
        follower.playbackRate = 1;
      }
      if (follower.paused) void follower.play().catch(() => undefined);
    }
  }
}
