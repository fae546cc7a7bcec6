// The engine: the local state and every rule that changes it. It knows no
// transport: sessions (WebSocket, HTTP) hand it welcomes, pushes and write
// results, and it applies each in one storage commit.

import { compareUTF8, recordHash } from "./json.js";
import type { StorageAdapter, StorageOp, StoreName } from "./storage.js";
import type { AppTx, Change, Conflict, EntriesHandler, Entry, RecordChange, WriteError } from "./types.js";
import {
  closeAction,
  isRetryableCode,
  type ChangeSet,
  type ChannelPosition,
  type ChannelStatus,
  type Position,
  type Push,
  type RecordError,
  type Saved,
  type WireEntry,
  type WriteFrame,
  type WriteResult,
} from "./wire.js";

/** The local schema version this SDK writes. */
export const SCHEMA_VERSION = 1;

/** A record in the records store. */
interface StoredRecord {
  seq: number;
  data: string | null;
  createdAt: number;
  expiresAt: number;
  origin: string;
}

/** A record as the server last confirmed it: live at seq, or gone (live false). */
export interface ServerRec extends StoredRecord {
  live: boolean;
}

/** One row of the outbox. */
export interface OutRow {
  id: number;
  channel: string;
  key: string;
  op: "put" | "delete";
  data: string | null;
  createdAt: number;
  writeId?: string;
  kind?: "create" | "update" | "delete";
  baseSeq?: number;
}

/** A write of the outbox: its rows in order and its frame. */
export interface OutWrite {
  id: string;
  rows: OutRow[];
  frame: WriteFrame;
}

type NoticeKind = "reset" | "gap" | "conflict" | "write_error";

interface Notice {
  id: number;
  kind: NoticeKind;
  channel: string;
  firstSeq?: number;
  payload?: Conflict | WriteError;
}

/** The callbacks that get notices, at least once each. */
export interface NoticeHandlers {
  onReset?: (channel: string) => void | Promise<void>;
  onGap?: (channel: string, firstSeq: number) => void | Promise<void>;
  onConflict?: (c: Conflict) => void | Promise<void>;
  onWriteError?: (e: WriteError) => void | Promise<void>;
}

export interface EngineConfig extends NoticeHandlers {
  deviceId: string;
  bizzes: string[];
  onEntries?: EntriesHandler;
  writeRecords: number;
  writeBytes: number;
  now: () => number;
  log: (level: "debug" | "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
  /** Called after every commit, with what changed. */
  committed: (c: Committed) => void;
}

export interface Committed {
  records: RecordChange[];
  entries: Entry[];
}

/** Separates a channel from a record id in keys of the records and server stores. */
const SEP = "\u0000";

export function recKey(channel: string, id: string): string {
  return channel + SEP + id;
}

function splitKey(k: string): [string, string] {
  const i = k.indexOf(SEP);
  return [k.slice(0, i), k.slice(i + 1)];
}

function pad(n: number): string {
  return n.toString().padStart(16, "0");
}

/** Splits a channel into its biz and target. */
export function parseChannel(ch: string): { biz: string; target: string; kind: string; id: string } {
  const i = ch.indexOf("/");
  if (i <= 0 || i === ch.length - 1) throw new Error(`channel ${JSON.stringify(ch)}: want biz/target`);
  const biz = ch.slice(0, i);
  const target = ch.slice(i + 1);
  if (target === "global") return { biz, target, kind: "global", id: "" };
  const j = target.indexOf(":");
  const kind = j < 0 ? "" : target.slice(0, j);
  const id = j < 0 ? "" : target.slice(j + 1);
  if (!["user", "device", "group"].includes(kind) || id === "") throw new Error(`channel ${JSON.stringify(ch)}: bad target ${JSON.stringify(target)}`);
  return { biz, target, kind, id };
}

function bizOf(ch: string): string {
  const i = ch.indexOf("/");
  return i < 0 ? ch : ch.slice(0, i);
}

function parseData(raw: string | null): unknown {
  return raw === null ? undefined : JSON.parse(raw);
}

export function entryOf(e: WireEntry): Entry {
  return {
    channel: e.channel,
    seq: e.seq,
    op: e.op,
    key: e.key,
    data: parseData(e.data),
    json: e.data,
    createdAt: e.createdAt,
    expiresAt: e.expiresAt,
    origin: e.origin,
  };
}

function serverRecOf(e: WireEntry): ServerRec {
  const live = e.op === "put";
  return { seq: e.seq, live, data: live ? e.data : null, createdAt: e.createdAt, expiresAt: e.expiresAt, origin: e.origin };
}

function liveAt(r: ServerRec | undefined, nowMs: number): boolean {
  return !!r && r.live && (r.expiresAt === 0 || nowMs < r.expiresAt);
}

function changeOf(r: OutRow): Change {
  const c: Change = { channel: r.channel, id: r.key, op: r.op };
  if (r.op === "put") c.data = parseData(r.data);
  return c;
}

/** A serializing lock: one task at a time, in order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(task: () => Promise<T>): Promise<T> {
    const p = this.tail.then(task, task);
    this.tail = p.catch(() => undefined);
    return p;
  }
}

/**
 * One local transaction: reads see the committed state with this
 * transaction's own changes over it; commit writes every change in one
 * storage commit, and only then do the engine's caches take them.
 */
class Tx {
  ops: StorageOp[] = [];
  private records = new Map<string, StoredRecord | null>();
  private dropped = new Set<string>();
  private app = new Map<string, unknown>();
  pos: Map<string, Position>;
  outbox: Map<number, OutRow>;
  server: Map<string, ServerRec>;
  changes: RecordChange[] = [];
  entries: Entry[] = [];

  constructor(readonly eng: Engine) {
    this.pos = new Map(eng.pos);
    this.outbox = new Map(eng.outbox);
    this.server = new Map(eng.server);
  }

  async getRecord(k: string): Promise<StoredRecord | undefined> {
    if (this.records.has(k)) return this.records.get(k) ?? undefined;
    if (this.dropped.has(splitKey(k)[0])) return undefined;
    return (await this.eng.storage.get("records", k)) as StoredRecord | undefined;
  }

  setRecord(k: string, r: StoredRecord | null, local: boolean): void {
    this.records.set(k, r);
    const [channel, id] = splitKey(k);
    if (r) {
      this.ops.push({ op: "put", store: "records", key: k, value: r });
      this.changes.push({ channel, id, op: "put", data: parseData(r.data), seq: r.seq, local });
    } else {
      this.ops.push({ op: "delete", store: "records", key: k });
      this.changes.push({ channel, id, op: "delete", seq: 0, local });
    }
  }

  /** Drops every record of ch, reporting each as deleted. */
  async dropRecords(ch: string): Promise<void> {
    const gone = new Set<string>();
    if (!this.dropped.has(ch)) for (const [k] of await this.eng.storage.list("records", ch + SEP)) if (!this.records.has(k) || this.records.get(k)) gone.add(k);
    for (const [k, r] of this.records) if (r && splitKey(k)[0] === ch) gone.add(k);
    for (const k of gone) this.changes.push({ channel: ch, id: splitKey(k)[1], op: "delete", seq: 0, local: false });
    for (const k of [...this.records.keys()]) if (splitKey(k)[0] === ch) this.records.delete(k);
    this.dropped.add(ch);
    this.ops.push({ op: "deletePrefix", store: "records", prefix: ch + SEP });
  }

  setPos(ch: string, p: Position): void {
    this.pos.set(ch, { epoch: p.epoch, seq: p.seq });
    this.ops.push({ op: "put", store: "positions", key: ch, value: { epoch: p.epoch, seq: p.seq } });
  }

  delPos(ch: string): void {
    this.pos.delete(ch);
    this.ops.push({ op: "delete", store: "positions", key: ch });
  }

  putOut(r: OutRow): void {
    this.outbox.set(r.id, r);
    this.ops.push({ op: "put", store: "outbox", key: pad(r.id), value: r });
  }

  delOut(id: number): void {
    this.outbox.delete(id);
    this.ops.push({ op: "delete", store: "outbox", key: pad(id) });
  }

  setServer(k: string, r: ServerRec): void {
    this.server.set(k, r);
    this.ops.push({ op: "put", store: "server", key: k, value: r });
  }

  delServer(k: string): void {
    if (!this.server.has(k)) return;
    this.server.delete(k);
    this.ops.push({ op: "delete", store: "server", key: k });
  }

  hasPending(k: string): boolean {
    const [ch, key] = splitKey(k);
    for (const r of this.outbox.values()) if (r.channel === ch && r.key === key) return true;
    return false;
  }

  addNotice(n: Omit<Notice, "id">): void {
    const id = this.eng.nextNoticeId++;
    this.ops.push({ op: "put", store: "notices", key: pad(id), value: { ...n, id } });
  }

  put(store: StoreName, key: string, value: unknown): void {
    this.ops.push({ op: "put", store, key, value });
  }

  appTx(): AppTx {
    return {
      get: async (key) => {
        if (this.app.has(key)) return this.app.get(key);
        return this.eng.storage.get("app", key);
      },
      put: (key, value) => {
        this.app.set(key, value);
        this.ops.push({ op: "put", store: "app", key, value });
      },
      delete: (key) => {
        this.app.set(key, undefined);
        this.ops.push({ op: "delete", store: "app", key });
      },
    };
  }

  async commit(): Promise<void> {
    await this.eng.storage.commit(this.ops);
    this.eng.pos = this.pos;
    this.eng.outbox = this.outbox;
    this.eng.server = this.server;
    if (this.changes.length || this.entries.length) this.eng.cfg.committed({ records: this.changes, entries: this.entries });
  }
}

/** What applying a push did. */
export interface Applied {
  /** The positions committed, to ack. */
  positions: ChannelPosition[];
  /** Entries with a seq handed to the handler. */
  applied: number;
}

/** What applying a write result did. */
export interface ResultOutcome {
  known: boolean;
  /** The whole write failed for now; send it again as it is. */
  retryWrite: boolean;
  /** Changes put back to go in a new write. */
  retried: number;
}

/** A refusal of the reconcile endpoint. */
export class HTTPError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`HTTP ${status} ${code}: ${message}`);
    this.name = "HTTPError";
  }
}

/** The reconcile request, sent by the session that knows the server. */
export type ReconcilePost = (body: Record<string, unknown>) => Promise<ReconcileAnswer>;

export interface ReconcileAnswer {
  put: Array<{ id: string; seq: number; data: string | null; createdAt: number; expiresAt: number; origin: string }>;
  same: Array<{ id: string; seq: number; expiresAt: number }>;
  stale: string[];
  delete: string[];
  position: { channel: string; epoch: string; seq: number };
  nextId: string | null;
}

const RECONCILE_PAGE = 10_000;
const MAX_RECONCILE_TRIES = 3;

export class Engine {
  pos = new Map<string, Position>();
  outbox = new Map<number, OutRow>();
  server = new Map<string, ServerRec>();
  /** Each biz's default channel for this device ("" for a group biz), from the last welcome. */
  defaults = new Map<string, string>();
  /** The newest seq the server told of, per channel of the session. */
  serverLast = new Map<string, number>();
  nextOutId = 1;
  nextNoticeId = 1;
  readonly lock = new Mutex();
  private noticeLock = new Mutex();
  /** Set while the app's handler runs, to refuse re-entrant calls. */
  inHandler = false;
  /** Bizzes the server will not reconcile (not compact), for this engine's life. */
  reconcileOff = new Set<string>();
  /** Bizzes the one-shot sync refuses (not persistent); SSE still carries them live. */
  ephemeral = new Set<string>();
  private reconcileTries = new Map<string, number>();

  constructor(
    readonly storage: StorageAdapter,
    readonly cfg: EngineConfig,
  ) {}

  /** Loads the caches from storage. */
  async load(): Promise<void> {
    const schema = (await this.storage.get("meta", "schema")) as number | undefined;
    if (schema !== undefined && schema > SCHEMA_VERSION) throw new Error(`the local store was written by a newer SDK (schema ${schema}; this one knows ${SCHEMA_VERSION})`);
    if (schema === undefined) await this.storage.commit([{ op: "put", store: "meta", key: "schema", value: SCHEMA_VERSION }]);
    for (const [k, v] of await this.storage.list("positions")) this.pos.set(k, v as Position);
    for (const [, v] of await this.storage.list("outbox")) {
      const r = v as OutRow;
      this.outbox.set(r.id, r);
      this.nextOutId = Math.max(this.nextOutId, r.id + 1);
    }
    for (const [k, v] of await this.storage.list("server")) this.server.set(k, v as ServerRec);
    const notices = await this.storage.list("notices");
    for (const [, v] of notices) this.nextNoticeId = Math.max(this.nextNoticeId, (v as Notice).id + 1);
    const chans = ((await this.storage.get("meta", "channels")) as string[] | undefined) ?? [];
    this.defaults = defaultsOf(chans);
  }

  pendingCount(): number {
    return this.outbox.size;
  }

  /** The positions to send in a hello: those of subscribed bizzes with a seq. */
  helloPositions(): ChannelPosition[] {
    const out: ChannelPosition[] = [];
    for (const [ch, p] of this.pos) if (p.seq > 0 && this.cfg.bizzes.includes(bizOf(ch))) out.push({ channel: ch, epoch: p.epoch, seq: p.seq });
    out.sort((a, b) => (a.channel < b.channel ? -1 : a.channel > b.channel ? 1 : 0));
    return out;
  }

  lag(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [ch, last] of this.serverLast) out[ch] = Math.max(0, last - (this.pos.get(ch)?.seq ?? 0));
    return out;
  }

  // ---- welcome and push --------------------------------------------------

  /**
   * Acts on each channel's status in one commit: a reset drops the
   * channel's records and position, a gap moves the position to where
   * delivery resumes; each leaves a notice. With channels, they are kept
   * as the session's (each biz's default channel).
   */
  applyWelcome(statuses: ChannelStatus[], epochs: Map<string, string>, channels: boolean): Promise<void> {
    return this.lock.run(async () => {
      const tx = new Tx(this);
      for (const st of statuses) {
        epochs.set(st.channel, st.epoch);
        if (st.status === "reset") {
          this.cfg.log("warn", "channel was reset; dropping its local data", { channel: st.channel, epoch: st.epoch });
          await this.dropChannel(tx, st.channel);
          if (this.cfg.onReset) tx.addNotice({ kind: "reset", channel: st.channel });
        } else if (st.status === "gap") {
          this.cfg.log("warn", "entries expired or were trimmed before this device got them", { channel: st.channel, firstSeq: st.firstSeq });
          const p = { epoch: st.epoch, seq: st.from };
          const cur = tx.pos.get(st.channel);
          if (!cur || cur.seq < p.seq || cur.epoch !== p.epoch) tx.setPos(st.channel, p);
          if (this.cfg.onGap) tx.addNotice({ kind: "gap", channel: st.channel, firstSeq: st.firstSeq });
        } else if (st.status !== "ok") {
          this.cfg.log("warn", "unknown channel status", { channel: st.channel, status: st.status });
        }
      }
      const chans = statuses.map((s) => s.channel);
      if (channels) tx.put("meta", "channels", chans);
      await tx.commit();
      if (channels) {
        this.defaults = defaultsOf(chans);
        this.serverLast.clear();
      }
      for (const st of statuses) this.serverLast.set(st.channel, Math.max(st.lastSeq, channels ? 0 : (this.serverLast.get(st.channel) ?? 0)));
    });
  }

  /** Forgets what the server said of ch; local changes in the outbox stay and show again. */
  private async dropChannel(tx: Tx, ch: string): Promise<void> {
    await tx.dropRecords(ch);
    tx.delPos(ch);
    for (const [k, r] of [...tx.server]) {
      if (splitKey(k)[0] !== ch) continue;
      if (!tx.hasPending(k)) tx.delServer(k);
      else tx.setServer(k, { ...r, seq: 0, live: false, data: null });
    }
    const newest = new Map<string, OutRow>();
    for (const r of tx.outbox.values()) if (r.channel === ch) newest.set(r.key, r);
    for (const r of newest.values()) {
      if (r.op === "put") tx.setRecord(recKey(ch, r.key), { seq: 0, data: r.data, createdAt: r.createdAt, expiresAt: 0, origin: "" }, true);
    }
  }

  private async runHandler(tx: Tx, entries: Entry[]): Promise<void> {
    if (!this.cfg.onEntries || entries.length === 0) return;
    this.inHandler = true;
    try {
      await this.cfg.onEntries(entries, tx.appTx());
    } finally {
      this.inHandler = false;
    }
  }

  /**
   * Applies a push in one commit (protocol.md, section 8): drops entries at
   * or below the local position, stores records, calls the handler and
   * advances the positions. Nothing is kept if any step fails.
   */
  applyPush(p: Push, epochs: Map<string, string>): Promise<Applied> {
    return this.lock.run(async () => {
      const pos = this.pos;
      const mark = new Map<string, number>();
      const fresh: WireEntry[] = [];
      let repeats = 0;
      for (const e of p.entries) {
        if (e.seq === 0) {
          fresh.push(e);
          continue;
        }
        const last = mark.get(e.channel) ?? pos.get(e.channel)?.seq ?? 0;
        if (e.seq <= last) {
          repeats++;
          continue;
        }
        mark.set(e.channel, e.seq);
        fresh.push(e);
      }
      const pushEpoch = new Map<string, string>();
      for (const pp of p.positions) {
        pushEpoch.set(pp.channel, pp.epoch);
        const e = epochs.get(pp.channel);
        if (e && pp.epoch !== e) throw new Error(`push moves ${pp.channel} to epoch ${pp.epoch}, but the session is in ${e}`);
        const cur = pos.get(pp.channel);
        if (cur && cur.seq > 0 && cur.epoch !== "" && cur.epoch !== pp.epoch) throw new Error(`push moves ${pp.channel} to epoch ${pp.epoch}, but the local position is in ${cur.epoch}`);
      }
      for (const ch of mark.keys()) {
        if (!pushEpoch.get(ch) && !epochs.get(ch)) throw new Error(`push carries entries of ${ch} but no epoch for it`);
      }
      if (repeats > 0) this.cfg.log("debug", "dropped entries already applied", { count: repeats });

      const tx = new Tx(this);
      const entries = fresh.map(entryOf);
      await this.runHandler(tx, entries);
      const guarded = tx.server.size > 0;
      for (const e of fresh) {
        if (e.seq === 0 || e.key === "" || (e.op !== "put" && e.op !== "delete")) continue;
        if (guarded && this.pushServerRec(tx, e)) continue;
        await this.applyRecord(tx, e);
      }
      const next = nextPositions(p, fresh, mark, pos, epochs);
      for (const np of next) {
        tx.setPos(np.channel, np);
        if (guarded) this.dropGuards(tx, np.channel, np.seq);
      }
      tx.entries = entries;
      await tx.commit();
      for (const np of next) epochs.set(np.channel, np.epoch);
      for (const pp of p.positions) this.serverLast.set(pp.channel, Math.max(this.serverLast.get(pp.channel) ?? 0, pp.seq));
      for (const [ch, seq] of mark) this.serverLast.set(ch, Math.max(this.serverLast.get(ch) ?? 0, seq));
      return { positions: next, applied: fresh.filter((e) => e.seq !== 0).length };
    });
  }

  /** A pushed put or delete, unless the record is already at a newer seq. */
  private async applyRecord(tx: Tx, e: WireEntry): Promise<void> {
    const k = recKey(e.channel, e.key);
    const cur = await tx.getRecord(k);
    if (e.op === "put") {
      if (cur && cur.seq > e.seq) return;
      tx.setRecord(k, { seq: e.seq, data: e.data, createdAt: e.createdAt, expiresAt: e.expiresAt, origin: e.origin }, false);
    } else if (cur && cur.seq <= e.seq) {
      tx.setRecord(k, null, false);
    }
  }

  /**
   * Routes a pushed put or delete of a record that has a server version
   * aside. True when the entry must not touch the local record: it is older
   * than what is known, or local changes are pending (the entry then
   * becomes the server version they are judged against).
   */
  private pushServerRec(tx: Tx, e: WireEntry): boolean {
    const k = recKey(e.channel, e.key);
    const srv = tx.server.get(k);
    if (!srv) return false;
    if (e.seq < srv.seq) return true;
    if (tx.hasPending(k)) {
      tx.setServer(k, serverRecOf(e));
      return true;
    }
    tx.delServer(k);
    return false;
  }

  /** Forgets server versions kept only to stop older pushes, once the position passed them. */
  private dropGuards(tx: Tx, ch: string, seq: number): void {
    for (const [k, r] of [...tx.server]) {
      if (splitKey(k)[0] === ch && r.seq <= seq && !tx.hasPending(k)) tx.delServer(k);
    }
  }

  // ---- the outbox --------------------------------------------------------

  /** Applies a local change to the records and appends it to the outbox, in one commit. */
  change(ch: Change, dataRaw: string | null): Promise<void> {
    return this.lock.run(async () => {
      const tx = new Tx(this);
      const nowMs = this.cfg.now();
      const k = recKey(ch.channel, ch.id);
      const local = await tx.getRecord(k);
      const localLive = !!local && (local.expiresAt === 0 || nowMs < local.expiresAt);
      if (ch.op === "delete" && !localLive) return;
      const pending = tx.hasPending(k);
      let srv = tx.server.get(k);
      if (!srv) {
        srv = !pending && local ? { ...local, live: true } : { seq: 0, live: false, data: null, createdAt: 0, expiresAt: 0, origin: "" };
        tx.setServer(k, srv);
      }
      tx.putOut({ id: this.nextOutId++, channel: ch.channel, key: ch.id, op: ch.op, data: dataRaw, createdAt: nowMs });
      if (ch.op === "put") tx.setRecord(k, { seq: srv.seq, data: dataRaw, createdAt: nowMs, expiresAt: 0, origin: "device:" + this.cfg.deviceId }, true);
      else tx.setRecord(k, null, true);
      await tx.commit();
    });
  }

  /** Writes that were given their rows before and await a result, in outbox order. */
  assigned(): OutWrite[] {
    const byId = new Map<string, OutRow[]>();
    for (const r of this.outbox.values()) {
      if (!r.writeId) continue;
      let rows = byId.get(r.writeId);
      if (!rows) byId.set(r.writeId, (rows = []));
      rows.push(r);
    }
    return [...byId].map(([id, rows]) => ({ id, rows, frame: buildWrite(id, rows) }));
  }

  /**
   * Gives the oldest changes not yet in a write to a new one, and stores
   * that (each change's kind and base_seq) before anything is sent. It
   * stops at a record that has a change in busy, so a record's changes go
   * one at a time, each based on the seq the last one got. null: nothing
   * to send now.
   */
  async nextWrite(busy: Set<string>, newId: () => string): Promise<OutWrite | null> {
    for (;;) {
      const [w, resolved] = await this.lock.run(() => this.assign(busy, newId));
      if (w || resolved === 0) return w;
    }
  }

  private async assign(busy: Set<string>, newId: () => string): Promise<[OutWrite | null, number]> {
    const tx = new Tx(this);
    const nowMs = this.cfg.now();
    const id = newId();
    const rows: OutRow[] = [];
    const inWrite = new Set<string>();
    const resolved: string[] = [];
    let size = 0;
    for (const r0 of this.outbox.values()) {
      if (r0.writeId) continue;
      if (rows.length >= this.cfg.writeRecords) break;
      const k = recKey(r0.channel, r0.key);
      if (busy.has(k) || inWrite.has(k)) break;
      const srv = tx.server.get(k);
      const live = liveAt(srv, nowMs);
      const r = { ...r0 };
      if (r.op === "put" && live) [r.kind, r.baseSeq] = ["update", srv!.seq];
      else if (r.op === "put") [r.kind, r.baseSeq] = ["create", 0];
      else if (live) [r.kind, r.baseSeq] = ["delete", srv!.seq];
      else {
        // The server holds no such record: the delete is already true.
        tx.delOut(r.id);
        resolved.push(k);
        continue;
      }
      const n = (r.data?.length ?? 0) + r.key.length + r.channel.length + 64;
      if (rows.length > 0 && size + n > this.cfg.writeBytes) break;
      size += n;
      r.writeId = id;
      tx.putOut(r);
      rows.push(r);
      inWrite.add(k);
    }
    for (const k of resolved) this.settle(tx, k);
    if (rows.length === 0 && resolved.length === 0) return [null, 0];
    await tx.commit();
    if (rows.length === 0) return [null, resolved.length];
    return [{ id, rows, frame: buildWrite(id, rows) }, resolved.length];
  }

  /**
   * Applies the server's result for one write in one commit: each change
   * leaves the outbox in the commit that records its outcome, so a crash
   * before it means the write is sent again, never lost.
   */
  applyResult(res: WriteResult): Promise<ResultOutcome> {
    return this.lock.run(async () => {
      const rows = [...this.outbox.values()].filter((r) => r.writeId === res.writeId);
      if (rows.length === 0) return { known: false, retryWrite: false, retried: 0 };
      const out: ResultOutcome = { known: true, retryWrite: false, retried: 0 };
      if (res.error && closeAction(res.error.code) !== "stop") {
        this.cfg.log("info", "a write failed as a whole; sending it again later", { writeId: res.writeId, code: res.error.code, message: res.error.message });
        out.retryWrite = true;
        return out;
      }
      const saved = new Map<string, Saved>();
      for (const s of res.saved) saved.set(recKey(s.channel, s.id), s);
      const errs = new Map<string, RecordError[]>();
      for (const e of res.errors) {
        const k = recKey(e.channel, e.id);
        errs.set(k, [...(errs.get(k) ?? []), e]);
      }
      const tx = new Tx(this);
      const nowMs = this.cfg.now();
      const order: string[] = [];
      for (const r of rows) {
        const k = recKey(r.channel, r.key);
        let rerrs: RecordError[];
        if (res.error) {
          rerrs = [{ channel: r.channel, id: r.key, field: "", code: res.error.reason || "invalid", message: res.error.message, current: null }];
        } else {
          // A change set the server could not resolve names no channel.
          rerrs = errs.get(k) ?? errs.get(recKey("", r.key)) ?? [];
        }
        this.applyOne(tx, r, saved.get(k), rerrs, nowMs, out);
        if (!order.includes(k)) order.push(k);
      }
      for (const k of order) this.settle(tx, k);
      await tx.commit();
      return out;
    });
  }

  private applyOne(tx: Tx, r: OutRow, sv: Saved | undefined, rerrs: RecordError[], nowMs: number, out: ResultOutcome): void {
    const k = recKey(r.channel, r.key);
    let srv: ServerRec = tx.server.get(k) ?? { seq: 0, live: false, data: null, createdAt: 0, expiresAt: 0, origin: "" };
    for (const e of rerrs) {
      if (e.current && e.current.key === r.key && e.current.seq >= srv.seq) srv = serverRecOf(e.current);
    }
    // The push of a saved change can come before its result; an entry
    // already known at that seq is the server's exact record.
    if (sv && sv.seq > srv.seq) {
      srv = { seq: sv.seq, live: r.op === "put", data: r.op === "put" ? r.data : null, createdAt: nowMs, expiresAt: 0, origin: "device:" + this.cfg.deviceId };
    }
    tx.setServer(k, srv);
    const conflicts = rerrs.filter((e) => e.code === "conflict");
    if (conflicts.length > 0) {
      const dropped = this.dropLater(tx, r);
      conflicts.forEach((e, i) => {
        const cf: Conflict = {
          ...changeOf(r),
          dropped: i === 0 ? dropped : [],
          saved: !!sv,
          field: e.field,
          code: e.code,
          message: e.message,
          current: e.current ? entryOf(e.current) : null,
        };
        if (this.cfg.onConflict) tx.addNotice({ kind: "conflict", channel: r.channel, payload: cf });
        else this.cfg.log("info", "a local change conflicted", { channel: r.channel, id: r.key, field: e.field });
      });
    } else if (sv) {
      // saved
    } else if (rerrs.length > 0 && isRetryableCode(rerrs[0]!.code)) {
      this.cfg.log("info", "the server could not take a change now; sending it again later", { channel: r.channel, id: r.key, code: rerrs[0]!.code });
      const back = { ...r };
      delete back.writeId;
      delete back.kind;
      delete back.baseSeq;
      tx.putOut(back);
      out.retried++;
      return;
    } else {
      const e = rerrs[0];
      const we: WriteError = {
        ...changeOf(r),
        field: e?.field ?? "",
        code: e?.code ?? "internal",
        message: e?.message ?? "the server's result does not mention this change",
        current: e?.current ? entryOf(e.current) : null,
      };
      if (this.cfg.onWriteError) tx.addNotice({ kind: "write_error", channel: r.channel, payload: we });
      else this.cfg.log("info", "the server refused a local change", { channel: r.channel, id: r.key, code: we.code });
    }
    tx.delOut(r.id);
  }

  /** Drops the record's changes queued after a conflicting one. */
  private dropLater(tx: Tx, r: OutRow): Change[] {
    const out: Change[] = [];
    for (const x of [...tx.outbox.values()]) {
      if (x.channel === r.channel && x.key === r.key && x.id > r.id && !x.writeId) {
        tx.delOut(x.id);
        out.push(changeOf(x));
      }
    }
    return out;
  }

  /**
   * Sets a record whose changes have all been answered to the server's
   * version, which stays aside as a guard while the channel's position is
   * below its seq, so a push of an older entry cannot undo it.
   */
  private settle(tx: Tx, k: string): void {
    if (tx.hasPending(k)) return;
    const srv = tx.server.get(k);
    if (!srv) return;
    this.setLocal(tx, k, srv, true);
    if (srv.seq > (tx.pos.get(splitKey(k)[0])?.seq ?? 0)) return;
    tx.delServer(k);
  }

  private setLocal(tx: Tx, k: string, r: ServerRec, local: boolean): void {
    if (!r.live) tx.setRecord(k, null, local);
    else tx.setRecord(k, { seq: r.seq, data: r.data, createdAt: r.createdAt, expiresAt: r.expiresAt, origin: r.origin }, local);
  }

  // ---- notices -----------------------------------------------------------

  /**
   * Hands the stored notices to their callbacks, oldest first, deleting
   * each once its callback returned: at least once.
   */
  deliverNotices(): Promise<void> {
    return this.noticeLock.run(async () => {
      for (const [key, v] of await this.storage.list("notices")) {
        const n = v as Notice;
        try {
          if (n.kind === "reset") await this.cfg.onReset?.(n.channel);
          else if (n.kind === "gap") await this.cfg.onGap?.(n.channel, n.firstSeq ?? 0);
          else if (n.kind === "conflict") await this.cfg.onConflict?.(n.payload as Conflict);
          else if (n.kind === "write_error") await this.cfg.onWriteError?.(n.payload as WriteError);
        } catch (e) {
          this.cfg.log("error", "a notice callback failed; it is not called again", { kind: n.kind, err: String(e) });
        }
        await this.storage.commit([{ op: "delete", store: "notices", key }]);
      }
    });
  }

  // ---- reconcile by manifest ----------------------------------------------

  /**
   * Reconciles the channels that statuses say reset or gap of, where the
   * biz allows it. again: at least one was reconciled (or found not to be
   * reconcilable), so the caller must start over from the new positions.
   * before is called once before the first reconcile (the WebSocket
   * session ends there, so that the server does not push the backlog).
   */
  async reconcileStatuses(statuses: ChannelStatus[], post: ReconcilePost, before: () => void): Promise<boolean> {
    const todo: ChannelStatus[] = [];
    for (const st of statuses) {
      const biz = bizOf(st.channel);
      if (st.status !== "reset" && st.status !== "gap") this.reconcileTries.delete(st.channel);
      else if (!this.reconcileOff.has(biz) && (this.reconcileTries.get(st.channel) ?? 0) < MAX_RECONCILE_TRIES) {
        this.reconcileTries.set(st.channel, (this.reconcileTries.get(st.channel) ?? 0) + 1);
        todo.push(st);
      }
    }
    if (todo.length === 0) return false;
    before();
    let again = false;
    let failed: unknown = null;
    for (const st of todo) {
      try {
        const n = await this.reconcile(st, post);
        this.cfg.log("info", "reconciled the channel instead of resyncing it", { channel: st.channel, status: st.status, changes: n });
        again = true;
      } catch (e) {
        if (e instanceof HTTPError && e.status === 422) {
          this.cfg.log("info", "the server does not reconcile this biz; resyncing it instead", { biz: bizOf(st.channel) });
          this.reconcileOff.add(bizOf(st.channel));
          again = true;
        } else {
          this.cfg.log("warn", "reconcile failed; trying again on the next connection", { channel: st.channel, err: String(e) });
          failed = e;
        }
      }
    }
    if (!again && failed) throw failed;
    return again;
  }

  private async reconcile(st: ChannelStatus, post: ReconcilePost): Promise<number> {
    const ch = parseChannel(st.channel);
    const body: Record<string, unknown> = { biz: ch.biz };
    if (ch.kind !== "global") body.scope = { [ch.kind]: ch.id };
    // Seqs compare with the server's only within one epoch, which a gap keeps and a reset ends.
    if (st.status === "gap" && this.pos.get(st.channel)?.epoch === st.epoch) body.epoch = st.epoch;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.reconcilePages(st.channel, body, post);
      } catch (e) {
        // A reset between pages starts the reconcile over, once.
        if (e instanceof HTTPError && e.status === 409 && attempt === 0) continue;
        throw e;
      }
    }
  }

  /** The manifest of ch: the server version of each record held, in UTF-8 order of id. */
  private async manifest(ch: string): Promise<Array<{ id: string; seq: number; hash: string }>> {
    const out: Array<{ id: string; seq: number; hash: string }> = [];
    for (const [k, v] of await this.storage.list("records", ch + SEP)) {
      if (this.server.has(k)) continue;
      const r = v as StoredRecord;
      out.push({ id: splitKey(k)[1], seq: r.seq, hash: recordHash(r.data ?? "") });
    }
    for (const [k, r] of this.server) {
      if (splitKey(k)[0] !== ch || !r.live) continue;
      out.push({ id: splitKey(k)[1], seq: r.seq, hash: recordHash(r.data ?? "") });
    }
    out.sort((a, b) => compareUTF8(a.id, b.id));
    return out;
  }

  private async reconcilePages(ch: string, body: Record<string, unknown>, post: ReconcilePost): Promise<number> {
    const held = await this.manifest(ch);
    const puts: WireEntry[] = [];
    const deletes: string[] = [];
    const same: Array<{ id: string; seq: number; expiresAt: number }> = [];
    const stale: string[] = [];
    let pos: Position | null = null;
    let after: string | null = null;
    let idx = 0; // the first held record with id > after
    for (;;) {
      while (idx < held.length && after !== null && compareUTF8(held[idx]!.id, after) <= 0) idx++;
      const page = held.slice(idx, idx + RECONCILE_PAGE);
      const more = idx + RECONCILE_PAGE < held.length;
      const req: Record<string, unknown> = { ...body, records: page };
      if (after !== null) req.after_id = after;
      if (more) req.up_to_id = page[page.length - 1]!.id;
      if (pos) req.position = pos;
      const ans = await post(req);
      pos ??= { epoch: ans.position.epoch, seq: ans.position.seq };
      for (const p of ans.put) puts.push({ channel: ch, seq: p.seq, op: "put", key: p.id, data: p.data, createdAt: p.createdAt, expiresAt: p.expiresAt, origin: p.origin });
      deletes.push(...ans.delete);
      same.push(...ans.same);
      stale.push(...ans.stale);
      if (ans.nextId !== null) {
        if (after !== null && compareUTF8(ans.nextId, after) <= 0) throw new Error(`reconcile ${ch}: the server's next_id ${ans.nextId} does not move past ${after}`);
        after = ans.nextId;
      } else if (more) after = req.up_to_id as string;
      else break;
    }
    const at = pos;
    const entries: WireEntry[] = [
      ...puts,
      ...deletes.map((id) => ({ channel: ch, seq: at.seq, op: "delete", key: id, data: null, createdAt: 0, expiresAt: 0, origin: "" })),
    ].sort((a, b) => compareUTF8(a.key, b.key));
    return this.lock.run(async () => {
      const tx = new Tx(this);
      const handed = entries.map(entryOf);
      await this.runHandler(tx, handed);
      for (const e of entries) this.reconcileRecord(tx, e);
      for (const s of same) await this.setRecordSeq(tx, recKey(ch, s.id), s.seq, s.expiresAt);
      for (const id of stale) await this.setRecordSeq(tx, recKey(ch, id), 0, -1);
      if (at.seq === 0) tx.delPos(ch);
      else tx.setPos(ch, at);
      this.dropGuards(tx, ch, at.seq);
      tx.entries = handed;
      await tx.commit();
      return entries.length;
    });
  }

  /** Makes a record what the server said; with local changes pending, the server version they are judged against. */
  private reconcileRecord(tx: Tx, e: WireEntry): void {
    const k = recKey(e.channel, e.key);
    const srv = serverRecOf(e);
    if (e.op === "delete") srv.seq = 0; // the server knows no seq for the record now
    if (tx.hasPending(k)) {
      tx.setServer(k, srv);
      return;
    }
    tx.delServer(k);
    this.setLocal(tx, k, srv, false);
  }

  private async setRecordSeq(tx: Tx, k: string, seq: number, expiresAt: number): Promise<void> {
    const s = tx.server.get(k);
    if (s) {
      tx.setServer(k, { ...s, seq, expiresAt: expiresAt < 0 ? s.expiresAt : expiresAt });
      return;
    }
    const r = await tx.getRecord(k);
    if (r) tx.setRecord(k, { ...r, seq, expiresAt: expiresAt < 0 ? r.expiresAt : expiresAt }, false);
  }

  // ---- reads ---------------------------------------------------------------

  async getRecord(channel: string, id: string): Promise<StoredRecord | undefined> {
    const r = (await this.storage.get("records", recKey(channel, id))) as StoredRecord | undefined;
    if (!r || (r.expiresAt !== 0 && this.cfg.now() >= r.expiresAt)) return undefined;
    return r;
  }

  async listRecords(channel: string): Promise<Array<[string, StoredRecord]>> {
    const now = this.cfg.now();
    const out: Array<[string, StoredRecord]> = [];
    for (const [k, v] of await this.storage.list("records", channel + SEP)) {
      const r = v as StoredRecord;
      if (r.expiresAt === 0 || now < r.expiresAt) out.push([splitKey(k)[1], r]);
    }
    return out;
  }

  isPending(channel: string, id: string): boolean {
    for (const r of this.outbox.values()) if (r.channel === channel && r.key === id) return true;
    return false;
  }
}

/**
 * The positions to store once a push is applied. A position never moves
 * backwards; a push should list every channel it advances, and if it did
 * not (SSE carries no positions), the entries taken still count, in the
 * epoch the session knows.
 */
function nextPositions(p: Push, taken: WireEntry[], mark: Map<string, number>, pos: Map<string, Position>, epochs: Map<string, string>): ChannelPosition[] {
  const lastTaken = new Map<string, number>();
  for (const e of taken) if (e.seq !== 0) lastTaken.set(e.channel, e.seq);
  const out: ChannelPosition[] = [];
  const seen = new Set<string>();
  const advance = (ch: string, epoch: string, seq: number) => {
    if (seen.has(ch) || epoch === "" || seq === 0) return;
    const cur = pos.get(ch);
    if (cur && cur.epoch === epoch && seq <= cur.seq) return;
    seen.add(ch);
    out.push({ channel: ch, epoch, seq });
  };
  for (const pp of p.positions) advance(pp.channel, pp.epoch, Math.max(pp.seq, mark.get(pp.channel) ?? 0));
  for (const [ch, seq] of lastTaken) advance(ch, epochs.get(ch) ?? "", seq);
  return out;
}

/** Each biz's default channel, from a session's channels; a group biz maps to "". */
export function defaultsOf(channels: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of channels) {
    try {
      const c = parseChannel(s);
      out.set(c.biz, c.kind === "group" ? "" : s);
    } catch {
      // not a channel
    }
  }
  return out;
}

function kindRank(kind: string | undefined): number {
  return kind === "create" ? 0 : kind === "update" ? 1 : 2;
}

/**
 * Turns rows into a write frame. Consecutive rows of one channel share a
 * change set as long as the server's order within it (created, updated,
 * deleted) keeps theirs, so the server applies them in row order.
 */
export function buildWrite(id: string, rows: OutRow[]): WriteFrame {
  const w: WriteFrame = { writeId: id, changes: [] };
  let cur: ChangeSet | null = null;
  let lastCh = "";
  let lastRank = 0;
  for (const r of rows) {
    const rank = kindRank(r.kind);
    if (!cur || r.channel !== lastCh || rank < lastRank) {
      const c = parseChannel(r.channel);
      cur = { biz: c.biz, target: c.target, created: [], updated: [], deleted: [] };
      w.changes.push(cur);
      lastCh = r.channel;
    }
    lastRank = rank;
    if (r.kind === "create") cur.created.push({ id: r.key, data: r.data ?? "null" });
    else if (r.kind === "update") cur.updated.push({ id: r.key, baseSeq: r.baseSeq ?? 0, data: r.data ?? "null" });
    else cur.deleted.push({ id: r.key, baseSeq: r.baseSeq ?? 0 });
  }
  return w;
}
