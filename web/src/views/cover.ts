// Cover art: the album's picture when it has one, else a generated sleeve (a gradient from the
// album's name, its initials, a record's grooves) so every album is recognisable.

import { urls } from "../api";
import { h } from "../dom";

function hash(text: string): number {
  let value = 2166136261;
  for (let i = 0; i < text.length; i += 1) {
    value ^= text.charCodeAt(i);
    value = Math.imul(value, 16777619);
  }
  return value >>> 0;
}

function initials(text: string): string {
  const words = text
    .replace(/\(.*?\)/g, "")
    .split(/\s+/)
    .filter((w) => /[\p{L}\p{N}]/u.test(w));
  return words
    .slice(0, 2)
    .map((w) => (w.match(/[\p{L}\p{N}]/u) ?? [""])[0]?.toUpperCase())
    .join("");
}

export interface CoverSubject {
  albumId: number | null;
  hasCover: boolean;
  title: string;
}

/** A square cover (decorative: the title is always written beside it). */
export function cover(subject: CoverSubject, size: "s" | "m" | "l" = "m"): HTMLElement {
  const seed = hash(subject.title || "tonearm");
  const hue = seed % 360;
  const hue2 = (hue + 40 + ((seed >> 9) % 80)) % 360;
  const frame = h("div", {
    class: `cover cover-${size}`,
    "aria-hidden": "true",
    style: {
      "--cover-a": `hsl(${hue} 55% 42%)`,
      "--cover-b": `hsl(${hue2} 60% 22%)`,
    },
  });
  frame.append(h("span", { class: "cover-initials" }, initials(subject.title) || "♪"));
  if (subject.hasCover && subject.albumId !== null) {
    const img = h("img", {
      src: urls.cover(subject.albumId),
      alt: "",
      loading: "lazy",
      decoding: "async",
    });
    img.addEventListener("load", () => frame.classList.add("has-image"));
    img.addEventListener("error", () => img.remove());
    frame.append(img);
  }
  return frame;
}

/** A record, for when nothing plays. */
export function vinyl(size: "s" | "m" | "l" = "m"): HTMLElement {
  return h("div", { class: `cover cover-${size} vinyl`, "aria-hidden": "true" });
}
