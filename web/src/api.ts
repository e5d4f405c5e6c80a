// The REST client: typed wrappers of tonearm's /api routes (see /openapi.json) and the URLs the
// audio elements, links and images use. With a server token (`?token=` on the page's address,
// kept for the tab's session) every request carries it: as a Bearer header where fetch can send
// one, and as `?token=` where the browser fetches by itself (audio, images, downloads, the socket).

export interface Track {
  id: number;
  title: string | null;
  artist: string | null;
  album: string | null;
  album_id: number | null;
  genre: string | null;
  track_number: number | null;
  disc_number: number | null;
  year: number | null;
  duration_s: number;
  sample_rate: number;
  channels: number;
  bit_depth: number | null;
  codec: string;
  size_bytes: number;
  file_name: string;
  integrated_lufs: number | null;
  true_peak_dbtp: number | null;
  loudness_range_lu: number | null;
  analysed_at: string | null;
  missing: boolean;
  play_count: number;
  favourite: boolean;
}

export interface Page<T> {
  items: T[];
  total: number;
  total_exact: boolean;
  offset: number;
  limit: number;
  next_cursor: string | null;
}

export interface Album {
  id: number;
  title: string;
  artist: string | null;
  year: number | null;
  track_count: number;
  has_cover: boolean;
}

export interface Artist {
  id: number;
  name: string;
}

export interface Playlist {
  id: number;
  name: string;
  track_ids: number[];
  created_at: string;
  updated_at: string;
}

export interface Preset {
  name: string;
  lufs: number;
  ceiling_dbtp: number;
  description: string;
}

export interface ScanState {
  state: string;
  files_seen: number;
  added: number;
  updated: number;
  unchanged: number;
  moved: number;
  missing: number;
  errors: number;
  files_per_s: number;
  elapsed_s: number;
  error: string | null;
  analysed: number;
  analysis_pending: number;
}

export interface Stats {
  tracks: number;
  albums: number;
  artists: number;
  genres: number;
  playlists: number;
  favourites: number;
  total_duration_s: number;
  analysed: number;
  plays: number;
}

export type JobState = "queued" | "running" | "done" | "failed" | "cancelled";

export interface Job {
  id: string;
  state: JobState;
  stage: string | null;
  fraction: number;
  eta_s: number | null;
  error: string | null;
  worker: string | null;
  cached: boolean;
  submitted_at: string;
  started_at: string | null;
  finished_at: string | null;
  track_id: number | null;
  input_name: string;
  output_name: string;
  target: string;
  lufs: number | null;
  ceiling_dbtp: number | null;
  priority: number;
}

export interface Measures {
  integrated_lufs: number | null;
  true_peak_dbtp: number | null;
  loudness_range_lu: number | null;
  sample_peak_dbfs?: number | null;
  crest_db?: number | null;
  correlation?: number | null;
}

export interface JobReport {
  input: Measures;
  output: Measures & { format?: string; sample_rate?: number };
  target: { name: string; lufs: number; ceiling_dbtp: number };
  plan: { gain_db: number; strength: number; target_reachable: boolean; notes: string[] };
  limiter: { max_gain_reduction_db: number; mean_gain_reduction_db: number } | null;
  duration_s: number;
  render_passes: number;
  realtime_factor: number;
  loudness_error_lu: number | null;
  notes: string[];
}

export interface PlanSummary {
  track_id: number;
  /** A preset's name, or "custom". */
  target: string;
  lufs: number;
  ceiling_dbtp: number;
  strength: number;
  cached: boolean;
  input_lufs: number | null;
  predicted_lufs: number | null;
  gain_db: number;
  match_gain_db: number;
  target_reachable: boolean;
}

export type TrackOrder = "title" | "duration" | "added" | "loudness" | "path";

export interface UploadOptions {
  target: string;
  lufs?: number | undefined;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

const TOKEN_KEY = "tonearm.token";

function readToken(): string | null {
  const fromUrl = new URLSearchParams(location.search).get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

const token = readToken();

/** `path` with its query, plus the token when the browser fetches it by itself. */
export function url(path: string, query: Record<string, string | number | undefined> = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== "") params.set(key, String(value));
  }
  if (token) params.set("token", token);
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

function headers(json: boolean): HeadersInit {
  const result: Record<string, string> = { Accept: "application/json" };
  if (json) result["Content-Type"] = "application/json";
  if (token) result.Authorization = `Bearer ${token}`;
  return result;
}

async function detail(response: Response): Promise<string> {
  try {
    const body: unknown = await response.json();
    if (body && typeof body === "object" && "detail" in body) {
      const value = (body as { detail: unknown }).detail;
      if (typeof value === "string") return value;
      if (Array.isArray(value)) {
        return value
          .map((item: unknown) =>
            item && typeof item === "object" && "msg" in item ? String(item.msg) : String(item),
          )
          .join("; ");
      }
    }
  } catch {
    // not JSON: the status text says enough
  }
  return `${response.status} ${response.statusText}`.trim();
}

async function request<T>(
  method: string,
  path: string,
  options: { query?: Record<string, string | number | undefined>; body?: unknown } = {},
): Promise<T> {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(options.query ?? {})) {
    if (value !== undefined && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  const target = text ? `${path}?${text}` : path;
  const response = await fetch(target, {
    method,
    headers: headers(options.body !== undefined),
    body: options.body === undefined ? null : JSON.stringify(options.body),
  });
  if (!response.ok) throw new ApiError(response.status, await detail(response));
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

const get = <T>(path: string, query?: Record<string, string | number | undefined>) =>
  request<T>("GET", path, query ? { query } : {});

export const api = {
  tracks: (params: { q?: string; order?: TrackOrder; limit?: number; cursor?: string }) =>
    get<Page<Track>>("/api/tracks", params),
  track: (id: number) => get<Track>(`/api/tracks/${id}`),
  albums: (params: { q?: string; limit?: number; cursor?: string } = {}) =>
    get<Page<Album>>("/api/albums", params),
  album: (id: number) => get<Album>(`/api/albums/${id}`),
  artists: (params: { q?: string; limit?: number; offset?: number } = {}) =>
    get<Page<Artist>>("/api/artists", params),
  favourites: () => get<Track[]>("/api/favourites"),
  setFavourite: (id: number, favourite: boolean) =>
    request<Track>("PUT", `/api/tracks/${id}/favourite`, { body: { favourite } }),
  recordPlay: (id: number) => request<unknown>("POST", `/api/tracks/${id}/plays`),
  playlists: () => get<Playlist[]>("/api/playlists"),
  playlist: (id: number) => get<Playlist>(`/api/playlists/${id}`),
  createPlaylist: (name: string, trackIds: number[] = []) =>
    request<Playlist>("POST", "/api/playlists", { body: { name, track_ids: trackIds } }),
  changePlaylist: (
    id: number,
    change: { name?: string; track_ids?: number[]; append?: number[] },
  ) => request<Playlist>("PATCH", `/api/playlists/${id}`, { body: change }),
  deletePlaylist: (id: number) => request<void>("DELETE", `/api/playlists/${id}`),
  stats: () => get<Stats>("/api/stats"),
  scan: () => get<ScanState>("/api/scan"),
  startScan: () => request<ScanState>("POST", "/api/scan"),
  presets: () => get<Preset[]>("/api/presets"),
  /** `lufs`: a custom loudness (with the target "custom", or overriding a preset's). */
  plan: (id: number, target: string, strength: number, lufs?: number) =>
    request<PlanSummary>("POST", `/api/tracks/${id}/plan`, {
      query: { target, strength, lufs },
    }),
  jobs: (limit = 50) => get<Job[]>("/api/jobs", { limit }),
  job: (id: string) => get<Job>(`/api/jobs/${id}`),
  cancelJob: (id: string) => request<Job>("DELETE", `/api/jobs/${id}`),
  report: (id: string) => get<JobReport>(`/api/jobs/${id}/report`),
  upload: uploadFile,
};

/** Upload a mix to master (multipart, as POST /api/jobs/upload reads it). XMLHttpRequest, not
 * fetch: it reports the upload's progress. */
function uploadFile(
  file: File,
  options: UploadOptions,
  onProgress: (fraction: number) => void,
): Promise<Job> {
  const form = new FormData();
  form.append("target", options.target);
  if (options.lufs !== undefined) form.append("lufs", String(options.lufs));
  form.append("file", file, file.name);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/jobs/upload");
    xhr.responseType = "json";
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      const body: unknown = xhr.response;
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body as Job);
        return;
      }
      const text =
        body && typeof body === "object" && "detail" in body && typeof body.detail === "string"
          ? body.detail
          : `upload failed (${xhr.status})`;
      reject(new ApiError(xhr.status, text));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload was interrupted")));
    xhr.send(form);
  });
}

export const urls = {
  cover: (albumId: number) => url(`/api/albums/${albumId}/cover`),
  original: (trackId: number) => url(`/api/tracks/${trackId}/stream`),
  matched: (trackId: number, target: string, strength: number, lufs?: number) =>
    url(`/api/tracks/${trackId}/stream`, { match: target, strength, lufs }),
  mastered: (trackId: number, target: string, strength: number, lufs?: number) =>
    url(`/api/tracks/${trackId}/mastered`, { target, strength, lufs }),
  result: (jobId: string) => url(`/api/jobs/${jobId}/result`),
  plot: (jobId: string) => url(`/api/jobs/${jobId}/plot`),
  socket: () => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${url("/ws")}`;
  },
};
