// The live connection to the server's hub at /ws (src/tonearm/server/hub.py): every message is
// JSON {type, data}. On open it subscribes to its topics; it answers the hub's `ping` with `pong`
// (the hub closes a socket that does not), pings the hub itself when the line is quiet, and
// reconnects with capped, jittered exponential backoff when the socket drops or goes silent.

export interface LiveMessage {
  type: string;
  data: unknown;
}

type Handler = (data: unknown) => void;
export type LiveStatus = "connecting" | "open" | "closed";

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15_000;
const QUIET_PING_MS = 20_000;
/** No message for this long (the hub pings every 30 s): the line is dead, reconnect. */
const SILENCE_MS = 45_000;
const WATCH_MS = 5_000;

export class LiveSocket {
  private socket: WebSocket | null = null;
  private readonly handlers = new Map<string, Set<Handler>>();
  private readonly statusHandlers = new Set<(status: LiveStatus) => void>();
  private attempts = 0;
  private reconnectTimer: number | undefined;
  private watchTimer: number | undefined;
  private lastHeard = 0;
  private lastSent = 0;
  private stopped = true;
  private opens = 0;

  constructor(
    private readonly address: () => string,
    private readonly topics: readonly string[],
  ) {}

  /** Call `handler` with the data of every message of `type`; returns the unsubscribe. */
  on(type: string, handler: Handler): () => void {
    let set = this.handlers.get(type);
    if (!set) {
      set = new Set();
      this.handlers.set(type, set);
    }
    set.add(handler);
    return () => set.delete(handler);
  }

  onStatus(handler: (status: LiveStatus) => void): void {
    this.statusHandlers.add(handler);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
    this.watchTimer = window.setInterval(() => this.watch(), WATCH_MS);
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.reconnectTimer);
    window.clearInterval(this.watchTimer);
    this.socket?.close(1000, "bye");
    this.socket = null;
  }

  send(type: string, data?: unknown): void {
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type, data: data ?? null }));
      this.lastSent = Date.now();
    }
  }

  private connect(): void {
    this.setStatus("connecting");
    const socket = new WebSocket(this.address());
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempts = 0;
      this.lastHeard = Date.now();
      this.opens += 1;
      this.setStatus("open");
      this.send("subscribe", { topics: this.topics });
      // After a reconnection, views reload what they show: events were missed meanwhile.
      if (this.opens > 1) this.dispatch({ type: "reconnected", data: null });
    });
    socket.addEventListener("message", (event: MessageEvent<unknown>) => {
      this.lastHeard = Date.now();
      if (typeof event.data !== "string") return;
      let message: LiveMessage;
      try {
        message = JSON.parse(event.data) as LiveMessage;
      } catch {
        return;
      }
      if (message.type === "ping") this.send("pong", message.data);
      this.dispatch(message);
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.setStatus("closed");
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempts);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempts += 1;
    window.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = window.setTimeout(() => this.connect(), delay);
  }

  /** Heartbeat from this side: ping a quiet line; drop a silent one. */
  private watch(): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    if (now - this.lastHeard > SILENCE_MS) {
      this.socket = null;
      socket.close(4000, "silent");
      this.setStatus("closed");
      this.scheduleReconnect();
    } else if (now - Math.max(this.lastHeard, this.lastSent) > QUIET_PING_MS) {
      this.send("ping", { t: now });
    }
  }

  private dispatch(message: LiveMessage): void {
    for (const handler of this.handlers.get(message.type) ?? []) handler(message.data);
    for (const handler of this.handlers.get("*") ?? []) handler(message);
  }

  private setStatus(status: LiveStatus): void {
    for (const handler of this.statusHandlers) handler(status);
  }
}
