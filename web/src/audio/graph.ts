// The page's one AudioContext and its routing:
//
//   <audio> → source → voice gain ─┐
//   <audio> → source → voice gain ─┼→ bus ─→ volume → speakers
//                                  │    ├→ analyser (spectrum)
//                                  │    └→ loudness meter
//
// The spectrum and the meter listen before the volume: they show the stream, not how loud the
// listener turned it. The context starts on the first play (browsers want a user gesture).

import { LoudnessMeter } from "./meter";

export interface Voice {
  readonly element: HTMLAudioElement;
  readonly gain: GainNode;
  disconnect(): void;
}

/** Gain changes ramp over a few milliseconds: instant to the ear, without a click. */
const RAMP_S = 0.006;

export class AudioGraph {
  readonly ctx: AudioContext;
  readonly bus: GainNode;
  readonly analyser: AnalyserNode;
  private readonly volumeNode: GainNode;
  meter: LoudnessMeter | null = null;

  private constructor() {
    this.ctx = new AudioContext({ latencyHint: "playback" });
    this.bus = new GainNode(this.ctx);
    this.volumeNode = new GainNode(this.ctx);
    this.analyser = new AnalyserNode(this.ctx, {
      fftSize: 8192,
      smoothingTimeConstant: 0.75,
      minDecibels: -100,
      maxDecibels: -10,
    });
    this.bus.connect(this.volumeNode).connect(this.ctx.destination);
    this.bus.connect(this.analyser);
  }

  private static pending: Promise<AudioGraph> | null = null;

  /** The graph, created on first use (call from a user gesture). */
  static get(): Promise<AudioGraph> {
    if (!AudioGraph.pending) {
      const graph = new AudioGraph();
      AudioGraph.pending = LoudnessMeter.create(graph.ctx, graph.bus).then((meter) => {
        graph.meter = meter;
        return graph;
      });
    }
    return AudioGraph.pending;
  }

  async resume(): Promise<void> {
    if (this.ctx.state !== "running") await this.ctx.resume();
  }

  setVolume(value: number): void {
    this.volumeNode.gain.setTargetAtTime(value, this.ctx.currentTime, RAMP_S);
  }

  /** Route an audio element through the graph, at `level` (0 silent, 1 audible). */
  voice(element: HTMLAudioElement, level: number): Voice {
    const source = this.ctx.createMediaElementSource(element);
    const gain = new GainNode(this.ctx, { gain: level });
    source.connect(gain).connect(this.bus);
    return {
      element,
      gain,
      disconnect: () => {
        source.disconnect();
        gain.disconnect();
      },
    };
  }

  fade(voice: Voice, level: number): void {
    voice.gain.gain.cancelScheduledValues(this.ctx.currentTime);
    voice.gain.gain.setTargetAtTime(level, this.ctx.currentTime, RAMP_S / 3);
  }
}
