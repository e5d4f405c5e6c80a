// The loudness meter's audio-thread half (an AudioWorkletProcessor): K-weights every channel
// with the two BS.1770 biquads, in double precision, and posts the weighted mean square
// Σ G_i z_i of every contiguous 100 ms block to the page (meter.ts sums them into windows).

import { BLOCK_S, LOUDNESS_PROCESSOR, channelWeight, kWeighting } from "./kweighting";
import type { Biquad } from "./kweighting";

// The AudioWorkletGlobalScope's names (TypeScript's DOM library does not declare them).
declare const sampleRate: number;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
}
declare function registerProcessor(
  name: string,
  processor: new () => AudioWorkletProcessor & {
    process(inputs: Float32Array[][]): boolean;
  },
): void;

/** Direct form II transposed state of one channel through both stages. */
class ChannelFilter {
  private s1 = 0;
  private s2 = 0;
  private t1 = 0;
  private t2 = 0;

  constructor(
    private readonly shelf: Biquad,
    private readonly highPass: Biquad,
  ) {}

  /** Σ y² of `samples` through the K-weighting. */
  sumOfSquares(samples: Float32Array): number {
    const [b0, b1, b2] = this.shelf.b;
    const [, a1, a2] = this.shelf.a;
    const [c0, c1, c2] = this.highPass.b;
    const [, d1, d2] = this.highPass.a;
    let { s1, s2, t1, t2 } = this;
    let sum = 0;
    for (let i = 0; i < samples.length; i += 1) {
      const x = samples[i] ?? 0;
      const y = b0 * x + s1;
      s1 = b1 * x - a1 * y + s2;
      s2 = b2 * x - a2 * y;
      const z = c0 * y + t1;
      t1 = c1 * y - d1 * z + t2;
      t2 = c2 * y - d2 * z;
      sum += z * z;
    }
    Object.assign(this, { s1, s2, t1, t2 });
    return sum;
  }
}

class LoudnessProcessor extends AudioWorkletProcessor {
  private readonly stages = kWeighting(sampleRate);
  private readonly blockFrames = Math.round(sampleRate * BLOCK_S);
  private filters: ChannelFilter[] = [];
  private weighted = 0;
  private frames = 0;

  process(inputs: Float32Array[][]): boolean {
    const input = inputs[0] ?? [];
    const length = input[0]?.length ?? 128; // no input connected: a quantum of silence
    while (this.filters.length < input.length) {
      this.filters.push(new ChannelFilter(...this.stages));
    }
    input.forEach((samples, channel) => {
      const filter = this.filters[channel];
      if (filter) {
        this.weighted += channelWeight(channel, input.length) * filter.sumOfSquares(samples);
      }
    });
    this.frames += length;
    if (this.frames >= this.blockFrames) {
      this.port.postMessage(this.weighted / this.frames);
      this.weighted = 0;
      this.frames = 0;
    }
    return true;
  }
}

registerProcessor(LOUDNESS_PROCESSOR, LoudnessProcessor);
