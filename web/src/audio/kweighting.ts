// ITU-R BS.1770-4 loudness, the parts the browser computes: the K-weighting filter and the
// block/window arithmetic of momentary (400 ms) and short-term (3 s, EBU Tech 3341) loudness.

/** One biquad section, normalised so that a0 = 1: y = b0 x + b1 x1 + b2 x2 - a1 y1 - a2 y2. */
export interface Biquad {
  b: readonly [number, number, number];
  a: readonly [number, number, number];
}

/** The two K-weighting stages at `sampleRate`: the pre-filter (a high shelf of about +4 dB
 * above 1.5 kHz, the head's effect) and the RLB weighting (a high-pass near 38 Hz).
 *
 * BS.1770-4 Annex 1 tabulates them at 48 kHz only (Tables 1 and 2); these are the analogue
 * prototypes re-derived by bilinear transform for any rate (as libebur128 and pyloudnorm do).
 * At 48 kHz they give the standard's table to 1e-12. */
export function kWeighting(sampleRate: number): [Biquad, Biquad] {
  // Stage 1, Table 1: the shelving pre-filter.
  const f0 = 1681.974450955533;
  const gainDb = 3.999843853973347;
  const q = 0.7071752369554196;
  const k = Math.tan((Math.PI * f0) / sampleRate);
  const vh = 10 ** (gainDb / 20);
  const vb = vh ** 0.4996667741545416;
  const a0 = 1 + k / q + k * k;
  const shelf: Biquad = {
    b: [
      (vh + (vb * k) / q + k * k) / a0,
      (2 * (k * k - vh)) / a0,
      (vh - (vb * k) / q + k * k) / a0,
    ],
    a: [1, (2 * (k * k - 1)) / a0, (1 - k / q + k * k) / a0],
  };
  // Stage 2, Table 2: the RLB high-pass (numerator 1, -2, 1).
  const f1 = 38.13547087602444;
  const q1 = 0.5003270373238773;
  const k1 = Math.tan((Math.PI * f1) / sampleRate);
  const a01 = 1 + k1 / q1 + k1 * k1;
  const highPass: Biquad = {
    b: [1, -2, 1],
    a: [1, (2 * (k1 * k1 - 1)) / a01, (1 - k1 / q1 + k1 * k1) / a01],
  };
  return [shelf, highPass];
}

/** BS.1770 channel weights G_i: 1 for left, right and centre, 1.41 for the surrounds (the LFE,
 * channel 4 of 5.1, is left out). */
export function channelWeight(channel: number, channels: number): number {
  if (channels === 6) return channel === 3 ? 0 : channel >= 4 ? 1.41 : 1;
  return 1;
}

/** Loudness of a weighted mean square: L = -0.691 + 10 log10(Σ G_i z_i) (BS.1770-4, eq. 2). */
export function loudnessOf(weightedMeanSquare: number): number {
  return weightedMeanSquare > 0 ? -0.691 + 10 * Math.log10(weightedMeanSquare) : -Infinity;
}

/** The AudioWorkletProcessor that measures blocks (meter-worklet.ts). */
export const LOUDNESS_PROCESSOR = "tonearm-loudness";
export const BLOCK_S = 0.1;
const MOMENTARY_BLOCKS = 4;
const SHORT_TERM_BLOCKS = 30;

/** The last 3 s of 100 ms blocks (each Σ G_i z_i over its frames): momentary loudness over the
 * last 4 blocks, short-term over all 30 (a block holds the same number of frames, so the mean
 * of block means is the window's mean square). */
export class LoudnessWindow {
  private readonly blocks = new Float64Array(SHORT_TERM_BLOCKS);
  private next = 0;
  private filled = 0;

  push(weightedMeanSquare: number): void {
    this.blocks[this.next] = weightedMeanSquare;
    this.next = (this.next + 1) % SHORT_TERM_BLOCKS;
    this.filled = Math.min(SHORT_TERM_BLOCKS, this.filled + 1);
  }

  reset(): void {
    this.blocks.fill(0);
    this.next = 0;
    this.filled = 0;
  }

  /** Loudness over the last `count` blocks; -Infinity until they have all arrived. */
  private over(count: number): number {
    if (this.filled < count) return -Infinity;
    let sum = 0;
    for (let i = 1; i <= count; i += 1) {
      sum += this.blocks[(this.next - i + SHORT_TERM_BLOCKS) % SHORT_TERM_BLOCKS] ?? 0;
    }
    return loudnessOf(sum / count);
  }

  get momentary(): number {
    return this.over(MOMENTARY_BLOCKS);
  }

  get shortTerm(): number {
    return this.over(SHORT_TERM_BLOCKS);
  }
}
