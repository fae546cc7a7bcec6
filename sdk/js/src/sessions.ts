// Sessions: one connection each, over WebSocket or over HTTP (SSE to
// receive, POST /v1/write to upload). A session runs until its connection
// ends and says how it ended; the Client's run loop decides what next.

import { HTTPError, type Engine, type OutWrite } from "./engine.js";
import { abortController, after, cancel, sleep, textDecoder, type FetchLike, type Timer, type WebSocketFactory, type WebSocketLike } from "./env.js";
import { asList, asNum, asObj, asStr, closeCodeOfStatus, DeviceHTTP, SSEParser, type SSEEvent } from "./http.js";
import { SyncpointError, type TransportKind } from "./types.js";
import {
  closeAction,
  CloseCode,
  decodeEntry,
  decodeFrame,
  decodeStatus,
  decodeWriteResult,
  encode,
  encodeWriteBody,
  parseWire,
  ProtocolError,
  SUBPROTOCOL_JSON,
  type ChannelPosition,
  type ChannelStatus,
  type Push,
  type ServerFrame,
  type Welcome,
  type WireEntry,
  type WriteResult,
} from "./wire.js";

/** How a session ended. */
export interface Outcome {
  /** The server accepted the hello (or the first HTTP sync). */
  welcomed: boolean;
  /** The transport connected at all (the WebSocket opened). */
  opened: boolean;
  /** Why it ended, for the log. */
  err?: unknown;
  /** The server said stop: the client stops. */
  fatal?: SyncpointError;
  /** Start over at once (reconciled, or a resync that needs no wait). */
  again?: boolean;
  /** The HTTP session ended to try the WebSocket again. */
  retryWs?: boolean;
  /** The token was refused; get a new one. */
  unauthorized?: boolean;
  /** stop() ended it. */
  stopped?: boolean;
}

/** What a session needs from its Client. */
export interface SessionHost {
  readonly engine: Engine;
  readonly server: string;
  readonly deviceId: string;
  readonly platform?: string;
  readonly appVersion?: string;
  readonly bizzes: string[];
  readonly http: DeviceHTTP;
  readonly fetch: FetchLike | null;
  readonly webSocket: WebSocketFactory | null;
  readonly tokenIsCallback: boolean;
  readonly opts: {
    connectTimeoutMs: number;
    ackIntervalMs: number;
    ackEntries: number;
    writesInFlight: number;
    sseIdleTimeoutMs: number;
    wsRetryMs: number;
    retryWs: boolean;
  };
  token(): Promise<string>;
  connected(t: TransportKind): void;
  changed(): void;
  /** Registers the function to call when the outbox has something new (null: none). */
  onKick(fn: (() => void) | null): void;
  backoff(attempt: number): number;
  newWriteId(): string;
  log(level: "debug" | "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>): void;
}

function fatalOf(code: number, reason: string, message: string): SyncpointError {
  return new SyncpointError(`closed by the server: ${code}${reason ? " " + reason : ""}${message ? ": " + message : ""}`, code, reason);
}

/** What to do after a connection closed with code. */
function classify(host: SessionHost, code: number, reason: string, message: string, welcomed: boolean, opened: boolean): Outcome {
  const out: Outcome = { welcomed, opened, err: new SyncpointError(`closed: ${code} ${message}`.trim(), code, reason) };
  const action = closeAction(code);
  if (action === "resync") return { ...out, again: true };
  if (action === "reconnect") return out;
  // The token expired or was revoked during a session: a fresh one may be at hand.
  if (code === CloseCode.unauthorized && host.tokenIsCallback && welcomed) return { ...out, unauthorized: true };
  return { ...out, fatal: fatalOf(code, reason, message) };
}

/** The outbox's uploads as one session knows them. */
class OutboxState {
  queued: OutWrite[];
  inflight: OutWrite[] = [];
  busy = new Set<string>();
  paused = false;
  attempt = 0;
  timer: Timer = null;

  constructor(engine: Engine) {
    this.queued = engine.assigned();
    for (const w of this.queued) for (const r of w.rows) this.busy.add(r.channel + "\u0000" + r.key);
  }
}

function rowKeys(w: OutWrite): string[] {
  return w.rows.map((r) => r.channel + "\u0000" + r.key);
}

/** One WebSocket connection, from the hello to its close. */
export class WsSession {
  private ws: WebSocketLike | null = null;
  private done = false;
  private resolved = false;
  private resolve: (o: Outcome) => void = () => {};
  private chain: Promise<void> = Promise.resolve();
  private opened = false;
  private welcomed = false;
  private fatalFrame: { code: number; reason: string; message: string } | null = null;
  private epochs = new Map<string, string>();
  private hbMs = 20_000;
  private lastRecv = 0;
  private pending = new Map<string, ChannelPosition>();
  private unacked = 0;
  private ackTimer: Timer = null;
  private connectTimer: Timer = null;
  private watchTimer: Timer = null;
  private ob: OutboxState | null = null;
  private token = "";

  constructor(private readonly host: SessionHost) {}

  /** Ends the session normally (acks what is committed, closes with 1000). */
  stop(): void {
    this.enqueue(async () => {
      this.goodbye();
      this.finish({ welcomed: this.welcomed, opened: this.opened, stopped: true });
    });
  }

  async run(): Promise<Outcome> {
    const host = this.host;
    if (!host.webSocket) return { welcomed: false, opened: false, err: new Error("no WebSocket on this platform: pass config.webSocket") };
    let token: string;
    try {
      token = this.token = await host.token();
    } catch (e) {
      return { welcomed: false, opened: false, err: e };
    }
    if (this.done) return { welcomed: false, opened: false, stopped: true };
    const url = host.server.replace(/^http/, "ws").replace(/\/+$/, "") + "/v1/connect";
    return new Promise<Outcome>((resolve) => {
      this.resolve = resolve;
      let ws: WebSocketLike;
      try {
        ws = host.webSocket!(url, [SUBPROTOCOL_JSON]);
      } catch (e) {
        this.finish({ welcomed: false, opened: false, err: e });
        return;
      }
      this.ws = ws;
      this.connectTimer = after(host.opts.connectTimeoutMs, () => this.abort(new Error(`no welcome within ${host.opts.connectTimeoutMs} ms`)));
      ws.onopen = () => {
        this.opened = true;
        this.lastRecv = Date.now();
        this.send(encode.hello({ token, deviceId: host.deviceId, platform: host.platform, appVersion: host.appVersion, bizzes: host.bizzes, positions: host.engine.helloPositions() }));
      };
      ws.onmessage = (ev) => this.onMessage(ev.data);
      ws.onerror = () => {
        // The close event follows with the code.
      };
      ws.onclose = (ev) => {
        if (this.done) return;
        const f = this.fatalFrame;
        const code = f?.code ?? ev.code;
        this.finish(classify(host, code, f?.reason ?? "", f?.message ?? ev.reason, this.welcomed, this.opened));
      };
    });
  }

  private send(text: string): void {
    if (!this.ws || this.ws.readyState !== 1) throw new Error("the WebSocket is not open");
    this.ws.send(text);
  }

  private onMessage(data: unknown): void {
    if (this.done) return;
    this.lastRecv = Date.now();
    let f: ServerFrame;
    try {
      f = decodeFrame(typeof data === "string" ? data : String(data));
    } catch (e) {
      this.abort(e);
      return;
    }
    // Pings are answered here, not behind a slow handler.
    if (f.type === "ping") {
      try {
        this.send(encode.pong(f.nonce));
      } catch (e) {
        this.abort(e);
      }
      return;
    }
    this.enqueue(() => this.handle(f));
  }

  private enqueue(task: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      if (this.done) return;
      try {
        await task();
      } catch (e) {
        this.host.log("error", "session: dropping the connection", { err: String(e) });
        this.abort(e);
      }
    });
  }

  private async handle(f: ServerFrame): Promise<void> {
    const host = this.host;
    switch (f.type) {
      case "welcome":
        if (this.welcomed) return;
        return this.onWelcome(f.welcome);
      case "push": {
        if (!this.welcomed) return;
        const res = await host.engine.applyPush(f.push, this.epochs);
        host.changed();
        for (const p of res.positions) this.pending.set(p.channel, p);
        this.unacked += res.applied;
        if (this.pending.size === 0) return;
        if (this.unacked >= host.opts.ackEntries) this.flushAck();
        else if (this.ackTimer === null) this.ackTimer = after(host.opts.ackIntervalMs, () => this.enqueue(async () => this.flushAck()));
        return;
      }
      case "write_result":
        return this.onWriteResult(f.result);
      case "error":
        if (f.error.fatal) this.fatalFrame = { code: f.error.code, reason: f.error.reason, message: f.error.message };
        else host.log("warn", "the server reported an error", { code: f.error.code, reason: f.error.reason, message: f.error.message });
        return;
      default:
        return;
    }
  }

  private async onWelcome(w: Welcome): Promise<void> {
    const host = this.host;
    if (w.version !== 1) throw new ProtocolError(`the server chose protocol version ${w.version}`);
    cancel(this.connectTimer);
    this.connectTimer = null;
    // A reset or gap of a compact biz is reconciled by manifest rather than
    // resynced: the session ends first, and starts over from the new positions.
    // A reconcile that fails (no network, a refused origin, a 5xx) ends the
    // session with its error, after the goodbye: the socket is closed
    // already, so nothing else would. The next welcome tries again, up to
    // the engine's limit, then resyncs the old way.
    const token = this.token;
    let again: boolean;
    try {
      again = await host.engine.reconcileStatuses(w.channels, (body) => host.http.reconcile(body, token), () => this.goodbye());
    } catch (e) {
      this.finish({ welcomed: true, opened: true, err: e });
      return;
    }
    if (again) {
      this.finish({ welcomed: true, opened: true, again: true });
      return;
    }
    this.hbMs = w.heartbeatIntervalMs > 0 ? w.heartbeatIntervalMs : 20_000;
    await host.engine.applyWelcome(w.channels, this.epochs, true);
    this.welcomed = true;
    host.connected("websocket");
    host.changed();
    const watch = () => {
      this.watchTimer = after(Math.max(this.hbMs / 4, 10), () => {
        if (this.done) return;
        const silent = Date.now() - this.lastRecv;
        if (silent > 3 * this.hbMs) this.abort(new Error(`nothing from the server for ${silent} ms (heartbeat ${this.hbMs} ms)`));
        else watch();
      });
    };
    watch();
    await host.engine.deliverNotices();
    this.ob = new OutboxState(host.engine);
    host.onKick(() => this.enqueue(() => this.flushOutbox()));
    await this.flushOutbox();
  }

  private flushAck(): void {
    cancel(this.ackTimer);
    this.ackTimer = null;
    if (this.pending.size === 0) return;
    const ps = [...this.pending.values()].sort((a, b) => (a.channel < b.channel ? -1 : 1));
    this.send(encode.ack(ps));
    this.pending.clear();
    this.unacked = 0;
  }

  /** Sends writes while fewer than writesInFlight await their results. */
  private async flushOutbox(): Promise<void> {
    const ob = this.ob;
    const host = this.host;
    if (!ob) return;
    while (!this.done && !ob.paused && ob.inflight.length < host.opts.writesInFlight) {
      let w = ob.queued.shift() ?? null;
      if (!w) {
        w = await host.engine.nextWrite(ob.busy, () => host.newWriteId());
        if (!w) return;
        for (const k of rowKeys(w)) ob.busy.add(k);
      }
      this.send(encode.write(w.frame));
      ob.inflight.push(w);
    }
  }

  private async onWriteResult(res: WriteResult): Promise<void> {
    const ob = this.ob;
    const host = this.host;
    if (!ob) return;
    const i = ob.inflight.findIndex((w) => w.id === res.writeId);
    if (i < 0) return;
    const out = await host.engine.applyResult(res);
    const w = ob.inflight[i]!;
    ob.inflight.splice(i, 1);
    if (out.retryWrite) {
      ob.queued.unshift(w);
      this.pauseOutbox();
    } else {
      for (const k of rowKeys(w)) ob.busy.delete(k);
      if (out.retried > 0) this.pauseOutbox();
      else ob.attempt = 0;
    }
    host.changed();
    await host.engine.deliverNotices();
    await this.flushOutbox();
  }

  private pauseOutbox(): void {
    const ob = this.ob!;
    if (ob.paused) return;
    ob.paused = true;
    ob.timer = after(this.host.backoff(ob.attempt++), () =>
      this.enqueue(async () => {
        ob.paused = false;
        ob.timer = null;
        await this.flushOutbox();
      }),
    );
  }

  /** Acks what is committed and closes normally. */
  private goodbye(): void {
    try {
      this.flushAck();
    } catch {
      // the socket is gone
    }
    const ws = this.ws;
    this.done = true;
    try {
      ws?.close(1000);
    } catch {
      // already closed
    }
  }

  private abort(err: unknown): void {
    if (this.done) return;
    this.finish({ welcomed: this.welcomed, opened: this.opened, err });
  }

  private finish(o: Outcome): void {
    if (this.resolved) return;
    this.resolved = true;
    this.done = true;
    cancel(this.connectTimer);
    cancel(this.ackTimer);
    cancel(this.watchTimer);
    if (this.ob) cancel(this.ob.timer);
    this.host.onKick(null);
    const ws = this.ws;
    if (ws) {
      ws.onmessage = null;
      ws.onclose = null;
      ws.onopen = null;
      try {
        if (ws.readyState === 0 || ws.readyState === 1) ws.close(1000);
      } catch {
        // already closed
      }
    }
    this.resolve(o);
  }
}

const SYNC_PAGE = 1000;

/**
 * One HTTP session: a one-shot sync catches up from the local positions
 * (and confirms them), then an SSE stream (GET /v1/events) brings live
 * entries, and the outbox goes up through POST /v1/write.
 */
export class HttpSession {
  private done = false;
  private resolve!: (o: Outcome) => void;
  private ctrl = abortController();
  private welcomed = false;
  private epochs = new Map<string, string>();
  private timers: Timer[] = [];
  private idleTimer: Timer = null;
  private wakeUploader: (() => void) | null = null;

  constructor(private readonly host: SessionHost) {}

  stop(): void {
    this.finish({ welcomed: this.welcomed, opened: true, stopped: true });
  }

  run(): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      this.resolve = resolve;
      this.main().catch((e) => this.fail(e));
    });
  }

  private fail(e: unknown): void {
    if (e instanceof HTTPError) {
      const code = closeCodeOfStatus(e.status);
      this.finish(classify(this.host, code, e.code, e.message, this.welcomed, true));
      return;
    }
    this.finish({ welcomed: this.welcomed, opened: true, err: e });
  }

  private finish(o: Outcome): void {
    if (this.done) return;
    this.done = true;
    this.host.onKick(null);
    for (const t of this.timers) cancel(t);
    cancel(this.idleTimer);
    this.wakeUploader?.();
    try {
      this.ctrl.abort();
    } catch {
      // nothing to abort
    }
    this.resolve(o);
  }

  private async main(): Promise<void> {
    const host = this.host;
    if (!host.fetch) throw new Error("no fetch on this platform: pass config.fetch");
    const token = await host.token();
    if (await this.catchUp(token)) {
      this.finish({ welcomed: true, opened: true, again: true });
      return;
    }
    if (this.done) return;
    this.welcomed = true;
    host.changed();
    await host.engine.deliverNotices();
    if (host.opts.retryWs) this.timers.push(after(host.opts.wsRetryMs, () => this.finish({ welcomed: true, opened: true, again: true, retryWs: true })));
    void this.uploader(token).catch((e) => this.fail(e));
    await this.stream(token);
  }

  /**
   * Pulls everything after the local positions through one-shot sync, page
   * by page, applying each like a welcome and a push. true: a channel was
   * reconciled, start over.
   */
  private async catchUp(token: string): Promise<boolean> {
    const host = this.host;
    for (;;) {
      const bizzes = host.bizzes.filter((b) => !host.engine.ephemeral.has(b));
      if (bizzes.length === 0) return false;
      const body = {
        entities: bizzes.map((name) => ({ name })),
        positions: host.engine.helloPositions().filter((p) => bizzes.some((b) => p.channel.startsWith(b + "/"))),
        limit: SYNC_PAGE,
        format: "entries",
      };
      let ans;
      try {
        ans = asObj(await host.http.post("/v1/sync", body, token, this.ctrl.signal));
      } catch (e) {
        const m = e instanceof HTTPError && e.status === 422 ? /biz "([^"]+)" is not persistent/.exec(e.message) : null;
        if (m) {
          host.engine.ephemeral.add(m[1]!);
          continue;
        }
        throw e;
      }
      if (this.done) return false;
      const statuses: ChannelStatus[] = [];
      const push: Push = { entries: [], positions: [] };
      for (const x of asList(ans.entities)) {
        const en = asObj(x);
        const pos = asObj(en.position);
        const st: ChannelStatus = {
          channel: asStr(en.channel),
          status: asStr(en.status),
          epoch: asStr(pos.epoch),
          firstSeq: asNum(en.first_seq),
          lastSeq: asNum(en.last_seq),
          from: 0,
        };
        if (st.status === "gap" && st.firstSeq > 0) st.from = st.firstSeq - 1;
        statuses.push(st);
        for (const e of asList(en.entries)) push.entries.push(decodeEntry(e));
        if (st.epoch) push.positions.push({ channel: st.channel, epoch: st.epoch, seq: asNum(pos.seq) });
      }
      if (await host.engine.reconcileStatuses(statuses, (b) => host.http.reconcile(b, token), () => {})) return true;
      this.epochs = new Map();
      await host.engine.applyWelcome(statuses, this.epochs, true);
      await host.engine.applyPush(push, this.epochs);
      host.changed();
      await host.engine.deliverNotices();
      if (ans.more !== true) return false;
    }
  }

  /** Reads the SSE stream until it ends; acts on each event. */
  private async stream(token: string): Promise<void> {
    const host = this.host;
    const q = "?biz=" + host.bizzes.map(encodeURIComponent).join(",");
    const headers = { ...host.http.headers(token, false), Accept: "text/event-stream" };
    const resp = await host.fetch!(host.http.url("/v1/events" + q), { method: "GET", headers, signal: this.ctrl.signal });
    await DeviceHTTP.check(resp);
    if (!resp.body) throw new Error("the SSE answer has no body to stream");
    if (this.done) return;
    host.connected("http");
    const reader = resp.body.getReader();
    const dec = textDecoder();
    const parser = new SSEParser();
    let last = Date.now();
    const idle = () => {
      this.idleTimer = after(host.opts.sseIdleTimeoutMs / 3, () => {
        if (this.done) return;
        if (Date.now() - last > host.opts.sseIdleTimeoutMs) {
          this.finish({ welcomed: true, opened: true, err: new Error("the event stream went silent") });
          reader.cancel().catch(() => {});
        } else idle();
      });
    };
    idle();
    for (;;) {
      const { done, value } = await reader.read();
      if (this.done) return;
      if (done) {
        this.finish({ welcomed: true, opened: true, err: new Error("the event stream ended") });
        return;
      }
      last = Date.now();
      const events = parser.feed(dec.decode(value, { stream: true }));
      if (events.length > 0 && !(await this.onEvents(events))) return;
    }
  }

  /** Applies a run of events; false when the session ended. */
  private async onEvents(events: SSEEvent[]): Promise<boolean> {
    const host = this.host;
    let batch: WireEntry[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const push: Push = { entries: batch, positions: [] };
      batch = [];
      await host.engine.applyPush(push, this.epochs);
      host.changed();
    };
    for (const ev of events) {
      if (this.done) return false;
      if (ev.event === "entry") {
        const e = decodeEntry(parseWire(ev.data));
        if (e.seq > 0 && !this.epochs.get(e.channel)) {
          // The channel had no history when the sync started, so its epoch
          // is not known here (SSE entries carry none): sync again.
          await flush();
          this.finish({ welcomed: true, opened: true, again: true });
          return false;
        }
        batch.push(e);
      } else if (ev.event === "reset" || ev.event === "gap") {
        await flush();
        const st = decodeStatus(parseWire(ev.data));
        const cur = host.engine.pos.get(st.channel);
        // The stream started from the server's stored sync point, which can
        // lag the local one: a reset to the epoch the device already holds,
        // with nothing held beyond the channel's end, is no news.
        if (st.status === "reset" && cur && cur.epoch === st.epoch && cur.seq <= st.lastSeq) continue;
        if (st.status === "reset" && !cur && this.epochs.get(st.channel) === st.epoch) continue;
        if (st.status === "gap" && cur && cur.epoch === st.epoch && cur.seq >= st.from) continue;
        // Otherwise sync again: the one-shot says reset or gap from the
        // local position, and the device acts on it (reconcile or drop).
        this.finish({ welcomed: true, opened: true, again: true });
        return false;
      } else if (ev.event === "close") {
        await flush();
        const o = asObj(parseWire(ev.data));
        const code = asNum(o.code);
        this.finish(classify(host, code, asStr(o.reason), asStr(o.message), true, true));
        return false;
      }
    }
    await flush();
    return true;
  }

  /** Sends the outbox one write at a time while the session lasts. */
  private async uploader(token: string): Promise<void> {
    const host = this.host;
    const queued = host.engine.assigned();
    const busy = new Set<string>();
    let attempt = 0;
    let dirty = false;
    host.onKick(() => {
      dirty = true;
      this.wakeUploader?.();
    });
    while (!this.done) {
      dirty = false;
      const w = queued.shift() ?? (await host.engine.nextWrite(busy, () => host.newWriteId()));
      if (this.done) return;
      if (!w) {
        if (dirty) continue;
        // Wait for a new change (or look again in a minute).
        await new Promise<void>((resolve) => {
          const t = after(60_000, () => resolve());
          this.wakeUploader = () => {
            this.wakeUploader = null;
            cancel(t);
            resolve();
          };
        });
        continue;
      }
      let res: WriteResult;
      try {
        res = await this.postWrite(w, token);
      } catch (e) {
        if (e instanceof HTTPError && (e.status === 401 || e.status === 403)) throw e;
        host.log("info", "an upload failed; sending it again later", { writeId: w.id, err: String(e) });
        queued.unshift(w);
        await sleep(host.backoff(attempt++));
        continue;
      }
      if (this.done) return;
      const out = await host.engine.applyResult(res);
      host.changed();
      await host.engine.deliverNotices();
      if (out.retryWrite) queued.unshift(w);
      if (out.retryWrite || out.retried > 0) await sleep(host.backoff(attempt++));
      else attempt = 0;
    }
  }

  /**
   * POSTs one write. A write the server refused as a whole for good comes
   * back as a result with a stop error, so the outbox settles its changes;
   * one it could not take for now throws, and the write stays.
   */
  private async postWrite(w: OutWrite, token: string): Promise<WriteResult> {
    try {
      const a = asObj(await this.host.http.post("/v1/write", { write: encodeWriteBody(w.frame) }, token, this.ctrl.signal));
      const res = decodeWriteResult(a.write_result);
      if (res.writeId !== w.id) throw new ProtocolError(`the answer to write ${w.id} is for ${res.writeId}`);
      return res;
    } catch (e) {
      if (e instanceof HTTPError && e.status < 500 && ![401, 403, 408, 429].includes(e.status)) {
        return { writeId: w.id, saved: [], errors: [], error: { code: 4000, reason: e.code, message: e.message, fatal: false } };
      }
      throw e;
    }
  }
}

