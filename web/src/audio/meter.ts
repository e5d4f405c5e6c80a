// The live loudness meter: 100 ms blocks of K-weighted mean square, from an AudioWorklet
// (exact and contiguous) or, where worklets are unavailable (a page served over plain http
// beyond localhost is not a secure context), from two IIR filter nodes and an analyser per
// channel read every 100 ms (an estimate: the reads are not sample-aligned).

import {
  BLOCK_S,
  LOUDNESS_PROCESSOR,
  LoudnessWindow,
  channelWeight,
  kWeighting,
} from "./kweighting";
import workletUrl from "./meter-worklet.ts?worker&url";

export interface LoudnessReading {
  momentary: number;
  shortTerm: number;
}

export class LoudnessMeter {
  private readonly window = new LoudnessWindow();
  private readonly stop: () => void;
  readonly exact: boolean;

  private constructor(ctx: AudioContext, input: AudioNode, exact: boolean) {
    this.exact = exact;
    this.stop = exact ? this.viaWorklet(ctx, input) : this.viaAnalysers(ctx, input);
  }

  /** A meter listening to `input` (the worklet when the browser allows it). */
  static async create(ctx: AudioContext, input: AudioNode): Promise<LoudnessMeter> {
    if (ctx.audioWorklet) {
      try {
        await ctx.audioWorklet.addModule(workletUrl);
        return new LoudnessMeter(ctx, input, true);
      } catch (error) {
        console.warn("tonearm: loudness worklet unavailable, estimating instead", error);
      }
    }
    return new LoudnessMeter(ctx, input, false);
  }

  read(): LoudnessReading {
    return { momentary: this.window.momentary, shortTerm: this.window.shortTerm };
  }

  /** Forget the window (a seek or a new track starts a new measurement). */
  reset(): void {
    this.window.reset();
  }

  dispose(): void {
    this.stop();
  }

  private viaWorklet(ctx: AudioContext, input: AudioNode): () => void {
    const node = new AudioWorkletNode(ctx, LOUDNESS_PROCESSOR, {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCountMode: "max",
    });
    node.port.onmessage = (event: MessageEvent<number>) => this.window.push(event.data);
    input.connect(node);
    return () => {
      input.disconnect(node);
      node.port.onmessage = null;
    };
  }

  private viaAnalysers(ctx: AudioContext, input: AudioNode): () => void {
    const [shelf, highPass] = kWeighting(ctx.sampleRate);
    const first = new IIRFilterNode(ctx, { feedforward: [...shelf.b], feedback: [...shelf.a] });
    const second = new IIRFilterNode(ctx, {
      feedforward: [...highPass.b],
      feedback: [...highPass.a],
    });
    const splitter = new ChannelSplitterNode(ctx, { numberOfOutputs: 2 });
    const size = 2 ** Math.round(Math.log2(ctx.sampleRate * BLOCK_S));
    const analysers = [0, 1].map((channel) => {
      const analyser = new AnalyserNode(ctx, { fftSize: size });
      splitter.connect(analyser, channel);
      return analyser;
    });
    input.connect(first).connect(second).connect(splitter);
    const buffer = new Float32Array(size);
    const timer = window.setInterval(() => {
      let weighted = 0;
      analysers.forEach((analyser, channel) => {
        analyser.getFloatTimeDomainData(buffer);
        let sum = 0;
        for (const sample of buffer) sum += sample * sample;
        weighted += channelWeight(channel, 2) * (sum / size);
      });
      this.window.push(weighted);
    }, BLOCK_S * 1000);
    return () => {
      window.clearInterval(timer);
      input.disconnect(first);
    };
  }
}
