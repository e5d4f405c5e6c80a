// The operating system's media controls (lock screen, headset buttons, media keys).

import type { Player } from "./audio/player";
import { trackTitle } from "./format";

export function installMediaSession(player: Player): void {
  if (!("mediaSession" in navigator)) return;
  const session = navigator.mediaSession;
  const actions: [MediaSessionAction, MediaSessionActionHandler][] = [
    ["play", () => void player.play()],
    ["pause", () => player.pause()],
    ["previoustrack", () => void player.previous()],
    ["nexttrack", () => void player.next()],
    ["seekbackward", (d) => player.seekBy(-(d.seekOffset ?? 10))],
    ["seekforward", (d) => player.seekBy(d.seekOffset ?? 10)],
    ["seekto", (d) => d.seekTime !== undefined && player.seek(d.seekTime)],
  ];
  for (const [action, handler] of actions) {
    try {
      session.setActionHandler(action, handler);
    } catch {
      // this browser does not know the action
    }
  }
  let shown: number | null = null;
  player.on("state", () => {
    const track = player.current;
    session.playbackState = player.playing ? "playing" : track ? "paused" : "none";
    if ((track?.id ?? null) === shown) return;
    shown = track?.id ?? null;
    session.metadata = track
      ? new MediaMetadata({
          title: trackTitle(track),
          artist: track.artist ?? "",
          album: track.album ?? "",
        })
      : null;
  });
}
