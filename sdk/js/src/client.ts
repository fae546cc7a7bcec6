// The Client: configuration, the run loop (reconnects, fallback to HTTP),
// and the app's API (records, outbox, status).

import { Engine, parseChannel, type Committed } from "./engine.js";
import {
  after,
  cancel,
  defaultFetch,
  defaultWebSocket,
  ulid,
  type FetchLike,
  type Timer,
  type WebSocketFactory,
} from "./env.js";
import { DeviceHTTP } from "./http.js";
import { utf8 } from "./json.js";
import { Emitter, sameRecord, Value, type Observable } from "./observable.js";
import { HttpSession, WsSession, type Outcome, type SessionHost } from "./sessions.js";
import { MemoryStorage, type StorageAdapter } from "./storage.js";
import {
  SyncpointError,
  type Conflict,
  type ConnectionState,
  type EntriesHandler,
  type Entry,
  type LocalRecord,
  type Positions,
  type RecordChange,
  type TokenRequest,
  type TransportKind,
  type WriteError,
} from "./types.js";

/** A log sink; the default discards everything. */
export type Logger = (level: "debug" | "info" | "warn" | "error", message: string, extra?: Record<string, unknown>) => void;

/** The Client's configuration. server, token, deviceId and bizzes are required. */
export interface ClientConfig {
  /** The server's base URL, `http://host:port` or `https://host:port`. */
  server: string;
  /**
   * The device token, or an async callback that returns one. The callback
   * is called on every (re)connect, with reason "unauthorized" after the
   * server refused or expired the last one during a session.
   */
  token: string | ((req: TokenRequest) => string | Promise<string>);
  /** A stable id for this installation: 1 to 128 characters of `A-Z a-z 0-9 . _ ~ @ + = : -`. */
  deviceId: string;
  platform?: string;
  appVersion?: string;
  /** The bizzes to subscribe to. */
  bizzes: string[];

  /** Where the local state lives; default a new MemoryStorage (nothing survives a reload). */
  storage?: StorageAdapter;
  /** Opens WebSockets; default globalThis.WebSocket. */
  webSocket?: WebSocketFactory;
  /** fetch; default globalThis.fetch. */
  fetch?: FetchLike;
  /**
   * "auto" (default): WebSocket, falling back to SSE and HTTP uploads when
   * the WebSocket cannot connect; "websocket" or "http": only that one.
   */
  transport?: "auto" | "websocket" | "http";

  /**
   * Called with each batch of new entries inside the local transaction
   * that applies them; see the README ("The handler contract").
   */
  onEntries?: EntriesHandler;
  /** A channel's history was replaced: its local records and position were dropped; entries of the new epoch follow. */
  onReset?: (channel: string) => void | Promise<void>;
  /** Entries after the local position expired or were trimmed; delivery goes on at firstSeq. */
  onGap?: (channel: string, firstSeq: number) => void | Promise<void>;
  /** The server refused a local change because the record changed since its base (reject), or kept its own value of a field (merge). */
  onConflict?: (c: Conflict) => void | Promise<void>;
  /** The server refused a local change for another reason; it was rolled back. */
  onWriteError?: (e: WriteError) => void | Promise<void>;
  logger?: Logger;

  /** Reconnect delay: full jitter below a ceiling that doubles from minBackoffMs up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** A session that lasted this long starts the backoff over. */
  stableAfterMs?: number;
  /** The longest an applied position waits to be acked. */
  ackIntervalMs?: number;
  /** This many applied entries are acked at once. */
  ackEntries?: number;
  /** Bounds connecting and the welcome. */
  connectTimeoutMs?: number;
  /** Bounds one upload: records and bytes (a larger record goes alone). */
  writeRecords?: number;
  writeBytes?: number;
  /** Uploads awaiting their result at once (WebSocket). */
  writesInFlight?: number;
  /** Bounds the id and data of one put. */
  maxRecordBytes?: number;
  /** "auto": this many WebSocket attempts in a row that never got a welcome switch to HTTP. */
  fallbackAfterFailures?: number;
  /** "auto": how long to stay on HTTP before trying the WebSocket again. */
  wsRetryMs?: number;
  /** An SSE stream silent this long (the server sends a heartbeat every 15 s) is dropped. */
  sseIdleTimeoutMs?: number;
}

/** The Client's events. Each fires after the commit it reports, once per process. */
export interface ClientEvents {
  /** Local records changed (pushes, local puts and deletes, results, reconciles, resets). */
  change: RecordChange[];
  /** New entries were committed (after onEntries returned). */
  entries: Entry[];
  /** Something went wrong; the client goes on unless state is "stopped". */
  error: SyncpointError;
}

const DEVICE_ID = /^[A-Za-z0-9._~@+=:-]{1,128}$/;

function num(v: number | undefined, d: number): number {
  return v !== undefined && v > 0 ? v : d;
}

/** A new record id: a ULID. */
export function newId(): string {
  return ulid();
}

/**
 * One device's connection and local store. Make one with
 * `SyncpointClient.open(config)`, then `start()` it.
 */
export class SyncpointClient {
  /** The connection's state. */
  readonly state: Observable<ConnectionState>;
  /** The transport of the current session; null when not connected. */
  readonly transport: Observable<TransportKind | null>;
  /** Per channel, how many seqs the server has told of beyond the local position. */
  readonly lag: Observable<Readonly<Record<string, number>>>;
  /** How many local changes wait in the outbox for their result. */
  readonly pending: Observable<number>;
  /** The last error reported (null until one). */
  readonly lastError: Observable<SyncpointError | null>;

  private readonly stateV = new Value<ConnectionState>("disconnected");
  private readonly transportV = new Value<TransportKind | null>(null);
  private readonly lagV = new Value<Readonly<Record<string, number>>>({}, sameRecord);
  private readonly pendingV = new Value<number>(0);
  private readonly errorV = new Value<SyncpointError | null>(null);
  private readonly events = new Emitter<{ [K in keyof ClientEvents]: ClientEvents[K] }>();

  private readonly engine: Engine;
  private readonly cfg: Required<Pick<ClientConfig, "minBackoffMs" | "maxBackoffMs" | "stableAfterMs" | "maxRecordBytes" | "fallbackAfterFailures">> & ClientConfig;
  private readonly log: Logger;
  private readonly host: SessionHost;
  private kick: (() => void) | null = null;
  private session: WsSession | HttpSession | null = null;
  private running: Promise<void> | null = null;
  private stopping = false;
  private closed = false;
  private wake: (() => void) | null = null;
  private tokenReason: TokenRequest["reason"] = "connect";

  private constructor(config: ClientConfig, storage: StorageAdapter) {
    this.cfg = {
      ...config,
      minBackoffMs: num(config.minBackoffMs, 250),
      maxBackoffMs: Math.max(num(config.maxBackoffMs, 30_000), num(config.minBackoffMs, 250)),
      stableAfterMs: num(config.stableAfterMs, 10_000),
      maxRecordBytes: num(config.maxRecordBytes, 1 << 20),
      fallbackAfterFailures: num(config.fallbackAfterFailures, 2),
    };
    this.log = config.logger ?? (() => {});
    this.state = this.stateV;
    this.transport = this.transportV;
    this.lag = this.lagV;
    this.pending = this.pendingV;
    this.lastError = this.errorV;
    this.engine = new Engine(storage, {
      deviceId: config.deviceId,
      bizzes: [...config.bizzes],
      onEntries: config.onEntries,
      onReset: config.onReset,
      onGap: config.onGap,
      onConflict: config.onConflict,
      onWriteError: config.onWriteError,
      writeRecords: Math.min(num(config.writeRecords, 100), 1000),
      writeBytes: num(config.writeBytes, 1 << 20),
      now: () => Date.now(),
      log: this.log,
      committed: (c: Committed) => {
        this.pendingV.set(this.engine.pendingCount());
        this.lagV.set(this.engine.lag());
        if (c.records.length) this.events.emit("change", c.records);
        if (c.entries.length) this.events.emit("entries", c.entries);
      },
    });
    const fetch = config.fetch ?? defaultFetch();
    const http = new DeviceHTTP({ server: config.server, fetch: fetch ?? (() => Promise.reject(new Error("no fetch on this platform"))), deviceId: config.deviceId, platform: config.platform, appVersion: config.appVersion });
    const self = this;
    this.host = {
      engine: this.engine,
      server: config.server,
      deviceId: config.deviceId,
      platform: config.platform,
      appVersion: config.appVersion,
      bizzes: [...config.bizzes],
      http,
      fetch,
      webSocket: config.webSocket ?? defaultWebSocket(),
      tokenIsCallback: typeof config.token === "function",
      opts: {
        connectTimeoutMs: num(config.connectTimeoutMs, 15_000),
        ackIntervalMs: num(config.ackIntervalMs, 200),
        ackEntries: num(config.ackEntries, 512),
        writesInFlight: num(config.writesInFlight, 4),
        sseIdleTimeoutMs: num(config.sseIdleTimeoutMs, 45_000),
        wsRetryMs: num(config.wsRetryMs, 300_000),
        retryWs: (config.transport ?? "auto") === "auto",
      },
      token: () => self.getToken(),
      connected: (t) => {
        self.transportV.set(t);
        self.stateV.set("connected");
      },
      changed: () => {
        self.pendingV.set(self.engine.pendingCount());
        self.lagV.set(self.engine.lag());
      },
      onKick: (fn) => {
        self.kick = fn;
      },
      backoff: (attempt) => self.backoff(attempt),
      newWriteId: () => ulid(),
      log: this.log,
    };
  }

  /** Checks config, loads the local state from storage, and returns a Client that is not connected yet. */
  static async open(config: ClientConfig): Promise<SyncpointClient> {
    if (!/^https?:\/\/[^/]+/.test(config.server ?? "")) throw new Error(`server ${JSON.stringify(config.server)}: want an http:// or https:// URL`);
    if (!DEVICE_ID.test(config.deviceId ?? "")) throw new Error("deviceId: want 1 to 128 characters of A-Z a-z 0-9 . _ ~ @ + = : -");
    if (!config.token) throw new Error("no token: set config.token");
    if (!Array.isArray(config.bizzes)) throw new Error("bizzes: want a list of biz names");
    const c = new SyncpointClient(config, config.storage ?? new MemoryStorage());
    await c.engine.load();
    c.pendingV.set(c.engine.pendingCount());
    return c;
  }

  private async getToken(): Promise<string> {
    const t = this.cfg.token;
    if (typeof t === "string") return t;
    const reason = this.tokenReason;
    this.tokenReason = "connect";
    return t({ reason });
  }

  private backoff(attempt: number): number {
    const ceil = Math.min(this.cfg.maxBackoffMs, this.cfg.minBackoffMs * 2 ** Math.min(attempt, 30));
    return Math.floor(Math.random() * (ceil + 1));
  }

  // ---- the run loop --------------------------------------------------------

  /**
   * Starts connecting and keeps the session going: reconnects with jittered
   * backoff as each close code's action says, and falls back to HTTP where
   * the WebSocket cannot connect. It stops by itself only for a close whose
   * action is stop (state "stopped", lastError says why); call start()
   * again once something changed (a new token...).
   */
  start(): void {
    if (this.closed) throw new Error("the client is closed");
    if (this.running) return;
    this.stopping = false;
    this.running = this.loop().finally(() => {
      this.running = null;
    });
  }

  /** Ends the session normally (acks what was applied) and stops reconnecting. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.session?.stop();
    this.wake?.();
    await this.running;
  }

  /** Stops, and releases the storage. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.stop();
    this.closed = true;
    this.stateV.set("stopped");
    await this.engine.storage.close();
  }

  private report(e: SyncpointError): void {
    this.errorV.set(e);
    this.events.emit("error", e);
  }

  private async loop(): Promise<void> {
    const mode0 = this.cfg.transport ?? "auto";
    let mode: TransportKind = mode0 === "http" ? "http" : "websocket";
    let attempt = 0;
    let wsFailures = 0;
    await this.engine.deliverNotices().catch((e) => this.log("error", "deliver notices", { err: String(e) }));
    while (!this.stopping) {
      this.stateV.set("connecting");
      const session = mode === "websocket" ? new WsSession(this.host) : new HttpSession(this.host);
      this.session = session;
      const started = Date.now();
      let out: Outcome;
      try {
        out = await session.run();
      } catch (e) {
        out = { welcomed: false, opened: false, err: e };
      }
      this.session = null;
      this.transportV.set(null);
      if (this.stopping) break;
      if (out.fatal) {
        this.log("warn", "the server ended the session; not reconnecting", { code: out.fatal.code, err: out.fatal.message });
        this.report(out.fatal);
        this.stateV.set("stopped");
        return;
      }
      if (out.err) {
        this.log("info", "disconnected", { transport: mode, err: String(out.err) });
        this.report(out.err instanceof SyncpointError ? out.err : new SyncpointError(String(out.err instanceof Error ? out.err.message : out.err)));
      }
      if (out.unauthorized) this.tokenReason = "unauthorized";
      let switched = false;
      if (mode === "websocket" && mode0 === "auto") {
        if (out.welcomed) wsFailures = 0;
        else if (++wsFailures >= this.cfg.fallbackAfterFailures) {
          this.log("warn", "the WebSocket does not connect; falling back to SSE and HTTP uploads");
          mode = "http";
          switched = true;
        }
      } else if (mode === "http" && out.retryWs) {
        mode = "websocket";
        wsFailures = this.cfg.fallbackAfterFailures - 1;
        switched = true;
      }
      if (out.again || switched) continue;
      this.stateV.set("disconnected");
      if (out.welcomed && Date.now() - started >= this.cfg.stableAfterMs) attempt = 0;
      await this.pause(this.backoff(attempt++));
    }
    this.stateV.set("disconnected");
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let t: Timer = null;
      const done = () => {
        cancel(t);
        this.wake = null;
        resolve();
      };
      this.wake = done;
      t = after(ms, done);
    });
  }

  // ---- records -------------------------------------------------------------

  private toRecord(channel: string, id: string, r: { seq: number; data: string | null; createdAt: number; expiresAt: number; origin: string }): LocalRecord {
    return {
      id,
      seq: r.seq,
      data: r.data === null ? undefined : JSON.parse(r.data),
      createdAt: r.createdAt,
      expiresAt: r.expiresAt,
      origin: r.origin,
      pending: this.engine.isPending(channel, id),
    };
  }

  /** The local record id of channel (with local changes applied), or undefined. */
  async get(channel: string, id: string): Promise<LocalRecord | undefined> {
    const r = await this.engine.getRecord(channel, id);
    return r ? this.toRecord(channel, id, r) : undefined;
  }

  /** Every local record of channel that has not expired. */
  async list(channel: string): Promise<LocalRecord[]> {
    return (await this.engine.listRecords(channel)).map(([id, r]) => this.toRecord(channel, id, r));
  }

  /** get in biz's default channel for this device (its user's, its device's, or global). */
  async getBiz(biz: string, id: string): Promise<LocalRecord | undefined> {
    return this.get(this.defaultChannel(biz), id);
  }

  /** list of biz's default channel. */
  async listBiz(biz: string): Promise<LocalRecord[]> {
    return this.list(this.defaultChannel(biz));
  }

  /**
   * The channel a biz name means for this device, learned from the server
   * (the first welcome or HTTP sync). Throws before that, and for a group
   * biz, whose channel must be named.
   */
  defaultChannel(biz: string): string {
    const ch = this.engine.defaults.get(biz);
    if (ch === undefined) throw new Error(`biz ${biz}: its channel is not known until a session subscribed to it; name the channel (putTo) or connect first`);
    if (ch === "") throw new Error(`biz ${biz} is a group biz: name the channel, for example ${biz}/group:<id>`);
    return ch;
  }

  /** The sync point of every channel held. */
  positions(): Positions {
    const out: Positions = {};
    for (const [ch, p] of this.engine.pos) out[ch] = { ...p };
    return out;
  }

  // ---- the outbox ----------------------------------------------------------

  /**
   * Sets record id of biz's default channel to data (a JSON object): at once
   * locally, and on the server through the outbox, which is sent whenever
   * the client is connected and kept until each change has its result.
   */
  async put(biz: string, id: string, data: unknown): Promise<void> {
    return this.putTo(this.defaultChannel(biz), id, data);
  }

  /** put with the channel named, such as "tasks/group:g1" (the only way for a group biz). */
  async putTo(channel: string, id: string, data: unknown): Promise<void> {
    const raw = JSON.stringify(data);
    if (raw === undefined) throw new Error("put: data is not JSON");
    this.checkChange(channel, id);
    const size = utf8(id).length + utf8(raw).length;
    if (size > this.cfg.maxRecordBytes) throw new Error(`put: the record is ${size} bytes; maxRecordBytes allows ${this.cfg.maxRecordBytes}`);
    await this.engine.change({ channel, id, op: "put", data }, raw);
    this.afterChange();
  }

  /** Deletes record id of biz's default channel, locally at once and on the server through the outbox. */
  async delete(biz: string, id: string): Promise<void> {
    return this.deleteFrom(this.defaultChannel(biz), id);
  }

  /** delete with the channel named. */
  async deleteFrom(channel: string, id: string): Promise<void> {
    this.checkChange(channel, id);
    await this.engine.change({ channel, id, op: "delete" }, null);
    this.afterChange();
  }

  private checkChange(channel: string, id: string): void {
    // From inside onEntries, awaiting this would wait for the transaction
    // the handler is in; the call may also come from elsewhere meanwhile.
    if (this.engine.inHandler) this.log("warn", "put or delete while onEntries runs: do not await it from the handler (write through its tx instead)");
    parseChannel(channel);
    if (id === "" || id.length > 128) throw new Error("record id: want 1 to 128 characters");
  }

  private afterChange(): void {
    this.pendingV.set(this.engine.pendingCount());
    this.kick?.();
  }

  // ---- the app's key space ---------------------------------------------------

  /** A value the onEntries handler stored with tx.put. */
  async appGet(key: string): Promise<unknown | undefined> {
    return this.engine.storage.get("app", key);
  }

  /** The app values whose key starts with prefix, in key order. */
  async appList(prefix = ""): Promise<Array<[string, unknown]>> {
    return this.engine.storage.list("app", prefix);
  }

  // ---- events ----------------------------------------------------------------

  /** Listens to an event; returns the function that stops listening. */
  on<K extends keyof ClientEvents>(event: K, listener: (value: ClientEvents[K]) => void): () => void {
    return this.events.on(event, listener);
  }
}
