// What every view is given: the player, the live socket, shared lists and page-wide actions.

import type { Playlist, Preset, Track } from "./api";
import type { Player } from "./audio/player";
import type { LiveSocket } from "./ws";

export interface App {
  readonly player: Player;
  readonly live: LiveSocket;
  presets: Preset[];
  playlists: Playlist[];
  /** The search box's text (the tracks view filters by it). */
  query: string;
  toast(message: string, kind?: "info" | "error"): void;
  navigate(hash: string): void;
  refreshPlaylists(): Promise<void>;
  /** Ask which playlist to add `tracks` to (a dialog). */
  addToPlaylist(tracks: Track[]): void;
  /** Favourite or unfavourite a track (every view showing it hears of it). */
  toggleFavourite(track: Track): Promise<void>;
  onFavouriteChanged(listener: (track: Track) => void): () => void;
  /** Call `listener` when the library changes (scans, favourites, playlists, plays). */
  onLibraryChanged(listener: () => void): () => void;
  onSearch(listener: (query: string) => void): () => void;
}

/** One screen of the main area. */
export interface View {
  readonly el: HTMLElement;
  readonly title: string;
  dispose?(): void;
}

export type ViewFactory = (app: App, param: string | undefined) => View;

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
