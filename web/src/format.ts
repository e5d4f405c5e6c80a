// How numbers read on the page: times, loudness, sizes. A real minus sign (−) for negatives.

const MINUS = "\u2212";

export function signed(value: number, digits = 1): string {
  const text = Math.abs(value).toFixed(digits);
  if (Number(text) === 0) return (0).toFixed(digits);
  return value < 0 ? `${MINUS}${text}` : `+${text}`;
}

export function negative(value: number, digits = 1): string {
  const text = Math.abs(value).toFixed(digits);
  return value < 0 && Number(text) !== 0 ? `${MINUS}${text}` : text;
}

/** 3:07, 1:02:03; "–:––" when unknown. */
export function time(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return "\u2013:\u2013\u2013";
  }
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** "−14.0 LUFS", or "–" when unmeasured or silent. */
export function lufs(value: number | null | undefined, unit = " LUFS"): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "\u2013";
  return `${negative(value)}${unit}`;
}

export function db(value: number | null | undefined, unit = " dB"): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "\u2013";
  return `${signed(value)}${unit}`;
}

export function duration(seconds: number): string {
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.round((seconds % 3600) / 60);
  return hours > 0 ? `${hours} h ${minutes} min` : `${minutes} min`;
}

export function plural(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}

export function percent(fraction: number): string {
  return `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
}

export function trackTitle(track: { title: string | null; file_name: string }): string {
  return track.title || track.file_name;
}

/** "spotify" → "Spotify"; "aes", "ebu" and "cd" → "AES", "EBU", "CD". */
export function presetName(name: string): string {
  if (name === "aes" || name === "ebu" || name === "cd") return name.toUpperCase();
  return `${name[0]?.toUpperCase() ?? ""}${name.slice(1)}`;
}
