// The spectrum view: the analyser's FFT as log-spaced bars from 20 Hz to 20 kHz, with a slow
// peak line, drawn on a canvas sized for the screen's pixel density.

const BANDS = 56;
const LOW_HZ = 20;
const HIGH_HZ = 20_000;
const FLOOR_DB = -96;
const CEILING_DB = -12;
const PEAK_FALL_DB = 0.6;
const GRID_HZ = [100, 1000, 10_000];

export class SpectrumView {
  private data: Float32Array<ArrayBuffer> = new Float32Array(0);
  private readonly peaks = new Float32Array(BANDS).fill(FLOOR_DB);
  private readonly levels = new Float32Array(BANDS).fill(FLOOR_DB);

  constructor(readonly canvas: HTMLCanvasElement) {}

  /** One frame from `analyser` (null: draw the idle state). */
  draw(analyser: AnalyserNode | null, playing: boolean): void {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const g = canvas.getContext("2d");
    if (!g) return;
    g.clearRect(0, 0, width, height);
    this.grid(g, width, height, ratio);
    if (analyser && playing) this.measure(analyser);
    else this.levels.fill(FLOOR_DB);

    const gap = Math.max(1, Math.round(ratio * 1.5));
    const barWidth = (width - gap * (BANDS - 1)) / BANDS;
    const gradient = g.createLinearGradient(0, height, 0, 0);
    gradient.addColorStop(0, "#f5a524");
    gradient.addColorStop(0.7, "#ffcf6e");
    gradient.addColorStop(1, "#fff4d6");
    const y = (db: number) =>
      height *
      (1 - (Math.max(FLOOR_DB, Math.min(CEILING_DB, db)) - FLOOR_DB) / (CEILING_DB - FLOOR_DB));
    for (let band = 0; band < BANDS; band += 1) {
      const x = band * (barWidth + gap);
      const level = this.levels[band] ?? FLOOR_DB;
      const top = y(level);
      g.fillStyle = gradient;
      g.globalAlpha = 0.9;
      g.fillRect(x, top, barWidth, height - top);
      const peak = (this.peaks[band] = Math.max(
        level,
        (this.peaks[band] ?? FLOOR_DB) - PEAK_FALL_DB,
      ));
      if (peak > FLOOR_DB + 1) {
        g.globalAlpha = 0.8;
        g.fillStyle = "#e6e8ee";
        g.fillRect(x, y(peak) - ratio, barWidth, ratio * 1.5);
      }
    }
    g.globalAlpha = 1;
  }

  private measure(analyser: AnalyserNode): void {
    if (this.data.length !== analyser.frequencyBinCount) {
      this.data = new Float32Array(analyser.frequencyBinCount);
    }
    analyser.getFloatFrequencyData(this.data);
    const binHz = analyser.context.sampleRate / analyser.fftSize;
    for (let band = 0; band < BANDS; band += 1) {
      const from = LOW_HZ * (HIGH_HZ / LOW_HZ) ** (band / BANDS);
      const to = LOW_HZ * (HIGH_HZ / LOW_HZ) ** ((band + 1) / BANDS);
      const first = Math.max(1, Math.floor(from / binHz));
      const last = Math.max(first, Math.min(this.data.length - 1, Math.ceil(to / binHz)));
      let loudest = -Infinity;
      for (let bin = first; bin <= last; bin += 1)
        loudest = Math.max(loudest, this.data[bin] ?? -Infinity);
      this.levels[band] = Number.isFinite(loudest) ? loudest : FLOOR_DB;
    }
  }

  private grid(g: CanvasRenderingContext2D, width: number, height: number, ratio: number): void {
    g.strokeStyle = "rgba(255,255,255,0.07)";
    g.fillStyle = "rgba(230,232,238,0.45)";
    g.lineWidth = ratio;
    g.font = `${10 * ratio}px system-ui, sans-serif`;
    for (const hz of GRID_HZ) {
      const x = (width * Math.log(hz / LOW_HZ)) / Math.log(HIGH_HZ / LOW_HZ);
      g.beginPath();
      g.moveTo(x, 0);
      g.lineTo(x, height);
      g.stroke();
      g.fillText(hz >= 1000 ? `${hz / 1000}k` : String(hz), x + 3 * ratio, 11 * ratio);
    }
  }
}
