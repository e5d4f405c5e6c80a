// Keyboard shortcuts. They stay out of the way of whatever has focus: text fields, selects and
// sliders keep their keys, and buttons and links keep space and enter.
//
//   space        play / pause          ← / →          back / forward 5 s
//   shift ← / →  previous / next track ↑ / ↓          volume
//   b            A/B (original / master)  m           mute
//   /            search

import type { Player } from "./audio/player";

const SEEK_S = 5;
const VOLUME_STEP = 0.05;

function ownsKeys(target: EventTarget | null, key: string): boolean {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (target instanceof HTMLInputElement) {
    const textual = !["range", "checkbox", "radio", "button", "submit", "file"].includes(
      target.type,
    );
    if (textual) return true;
    if (target.type === "range" && key.startsWith("Arrow")) return true;
    return key === " ";
  }
  const interactive = target.closest(
    "button, a[href], summary, [role=switch], [role=button], dialog",
  );
  return interactive !== null && (key === " " || key === "Enter");
}

export const SHORTCUTS: [string, string][] = [
  ["Space", "Play or pause"],
  ["← →", "Back or forward 5 seconds"],
  ["Shift ← →", "Previous or next track"],
  ["↑ ↓", "Volume"],
  ["B", "A/B: original or mastered"],
  ["M", "Mute"],
  ["/", "Search"],
];

export function installShortcuts(player: Player, focusSearch: () => void): void {
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (ownsKeys(event.target, event.key)) return;
    let handled = true;
    switch (event.key) {
      case " ":
        void player.toggle();
        break;
      case "ArrowLeft":
        if (event.shiftKey) void player.previous();
        else player.seekBy(-SEEK_S);
        break;
      case "ArrowRight":
        if (event.shiftKey) void player.next();
        else player.seekBy(SEEK_S);
        break;
      case "ArrowUp":
        player.setVolume(player.volume + VOLUME_STEP);
        break;
      case "ArrowDown":
        player.setVolume(player.volume - VOLUME_STEP);
        break;
      case "b":
      case "B":
        void player.setAudible(player.audible === "mastered" ? "original" : "mastered");
        break;
      case "m":
      case "M":
        player.toggleMute();
        break;
      case "/":
        focusSearch();
        break;
      default:
        handled = false;
    }
    if (handled) event.preventDefault();
  });
}
