// The protocol's messages (docs/protocol.md, version 1) in their JSON
// encoding, and the close-code table.

import { parseJSON, RawJSON, stringifyJSON, type JSONValue } from "./json.js";

/** The protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;
/** The WebSocket subprotocol of the JSON encoding. */
export const SUBPROTOCOL_JSON = "syncpoint.v1.json";

/** A channel's sync point: the epoch of its history and the highest seq applied. */
export interface Position {
  epoch: string;
  seq: number;
}

/** A position with its channel, as frames carry it. */
export interface ChannelPosition extends Position {
  channel: string;
}

/** An oplog entry as the server sends it; data is raw JSON text (null when absent). */
export interface WireEntry {
  channel: string;
  seq: number;
  op: string;
  key: string;
  data: string | null;
  createdAt: number;
  expiresAt: number;
  origin: string;
}

/** A channel's status in a welcome (or an SSE reset/gap event, or a one-shot answer). */
export interface ChannelStatus {
  channel: string;
  status: "ok" | "reset" | "gap" | string;
  epoch: string;
  firstSeq: number;
  lastSeq: number;
  from: number;
}

export interface Welcome {
  version: number;
  sessionId: string;
  heartbeatIntervalMs: number;
  maxBatch: number;
  channels: ChannelStatus[];
}

export interface Push {
  entries: WireEntry[];
  positions: ChannelPosition[];
}

export interface WireError {
  code: number;
  reason: string;
  message: string;
  fatal: boolean;
}

export interface Saved {
  channel: string;
  id: string;
  seq: number;
  overwrote: boolean;
}

export interface RecordError {
  channel: string;
  id: string;
  field: string;
  code: string;
  message: string;
  current: WireEntry | null;
}

export interface WriteResult {
  writeId: string;
  saved: Saved[];
  errors: RecordError[];
  error: WireError | null;
}

/** A record in a write frame; data is raw JSON text. */
export interface WireRecord {
  id: string;
  baseSeq?: number;
  data?: string;
}

export interface ChangeSet {
  biz: string;
  target: string;
  created: WireRecord[];
  updated: WireRecord[];
  deleted: WireRecord[];
}

export interface WriteFrame {
  writeId: string;
  changes: ChangeSet[];
}

/** A decoded frame from the server. Exactly one member is set. */
export type ServerFrame =
  | { type: "welcome"; welcome: Welcome }
  | { type: "push"; push: Push }
  | { type: "write_result"; result: WriteResult }
  | { type: "ping"; nonce: number | bigint }
  | { type: "pong"; nonce: number | bigint }
  | { type: "error"; error: WireError }
  | { type: "other"; name: string };

/** Raised for a frame that breaks the protocol. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

const RAW_KEYS = new Set(["data"]);

type Obj = { [k: string]: JSONValue };

function obj(v: JSONValue | undefined, what: string): Obj {
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v) || v instanceof RawJSON) throw new ProtocolError(`${what}: want an object`);
  return v as Obj;
}

function list(v: JSONValue | undefined, what: string): JSONValue[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ProtocolError(`${what}: want a list`);
  return v;
}

function str(v: JSONValue | undefined, what: string): string {
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw new ProtocolError(`${what}: want a string`);
  return v;
}

function bool(v: JSONValue | undefined, what: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw new ProtocolError(`${what}: want a boolean`);
  return v;
}

/** An unsigned integer that a JS number holds exactly. */
function uint(v: JSONValue | undefined, what: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === "bigint") throw new ProtocolError(`${what}: ${v} is beyond 2^53, which this SDK cannot keep exactly`);
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new ProtocolError(`${what}: want an unsigned integer`);
  return v;
}

function int(v: JSONValue | undefined, what: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === "bigint") return Number(v);
  if (typeof v !== "number" || !Number.isInteger(v)) throw new ProtocolError(`${what}: want an integer`);
  return v;
}

function raw(v: JSONValue | undefined): string | null {
  if (v === undefined) return null;
  if (v instanceof RawJSON) return v.text === "null" ? null : v.text;
  return v === null ? null : stringifyJSON(v);
}

/** Decodes an entry object (a push's, an SSE entry event's, a conflict's current). */
export function decodeEntry(v: JSONValue | undefined, what = "entry"): WireEntry {
  const o = obj(v, what);
  return {
    channel: str(o.channel, `${what}.channel`),
    seq: uint(o.seq, `${what}.seq`),
    op: str(o.op, `${what}.op`),
    key: str(o.key, `${what}.key`),
    data: raw(o.data),
    createdAt: int(o.created_at, `${what}.created_at`),
    expiresAt: int(o.expires_at, `${what}.expires_at`),
    origin: str(o.origin, `${what}.origin`),
  };
}

/** Decodes a channel status object. */
export function decodeStatus(v: JSONValue | undefined, what = "channel status"): ChannelStatus {
  const o = obj(v, what);
  return {
    channel: str(o.channel, `${what}.channel`),
    status: str(o.status, `${what}.status`),
    epoch: str(o.epoch, `${what}.epoch`),
    firstSeq: uint(o.first_seq, `${what}.first_seq`),
    lastSeq: uint(o.last_seq, `${what}.last_seq`),
    from: uint(o.from, `${what}.from`),
  };
}

function decodePosition(v: JSONValue, what: string): ChannelPosition {
  const o = obj(v, what);
  return { channel: str(o.channel, `${what}.channel`), epoch: str(o.epoch, `${what}.epoch`), seq: uint(o.seq, `${what}.seq`) };
}

export function decodeError(v: JSONValue | undefined): WireError {
  const o = obj(v, "error");
  return {
    code: uint(o.code, "error.code"),
    reason: str(o.reason, "error.reason"),
    message: str(o.message, "error.message"),
    fatal: bool(o.fatal, "error.fatal"),
  };
}

export function decodeWriteResult(v: JSONValue | undefined): WriteResult {
  const o = obj(v, "write_result");
  return {
    writeId: str(o.write_id, "write_result.write_id"),
    saved: list(o.saved, "saved").map((x, i) => {
      const s = obj(x, `saved[${i}]`);
      return {
        channel: str(s.channel, "saved.channel"),
        id: str(s.id, "saved.id"),
        seq: uint(s.seq, "saved.seq"),
        overwrote: bool(s.overwrote, "saved.overwrote"),
      };
    }),
    errors: list(o.errors, "errors").map((x, i) => {
      const e = obj(x, `errors[${i}]`);
      return {
        channel: str(e.channel, "errors.channel"),
        id: str(e.id, "errors.id"),
        field: str(e.field, "errors.field"),
        code: str(e.code, "errors.code"),
        message: str(e.message, "errors.message"),
        current: e.current === undefined || e.current === null ? null : decodeEntry(e.current, "errors.current"),
      };
    }),
    error: o.error === undefined || o.error === null ? null : decodeError(o.error),
  };
}

function nonce(v: JSONValue | undefined): number | bigint {
  if (v === undefined || v === null) return 0;
  if (typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v) && v >= 0)) return v;
  throw new ProtocolError("nonce: want an unsigned integer");
}

/** Parses JSON text with raw `data` members and big integers kept. */
export function parseWire(text: string): JSONValue {
  try {
    return parseJSON(text, RAW_KEYS);
  } catch (e) {
    throw new ProtocolError(e instanceof Error ? e.message : String(e));
  }
}

/** Decodes one JSON frame from the server. */
export function decodeFrame(text: string): ServerFrame {
  const v = parseWire(text);
  const o = obj(v, "frame");
  const names = Object.keys(o);
  if (names.length !== 1) throw new ProtocolError(`a frame has exactly one member, not ${names.length}`);
  const name = names[0]!;
  const m = o[name];
  if (m === null || typeof m !== "object" || Array.isArray(m) || m instanceof RawJSON) throw new ProtocolError(`${name}: want an object`);
  switch (name) {
    case "welcome": {
      const w = obj(m, "welcome");
      return {
        type: "welcome",
        welcome: {
          version: uint(w.version, "welcome.version"),
          sessionId: str(w.session_id, "welcome.session_id"),
          heartbeatIntervalMs: uint(w.heartbeat_interval_ms, "welcome.heartbeat_interval_ms"),
          maxBatch: uint(w.max_batch, "welcome.max_batch"),
          channels: list(w.channels, "welcome.channels").map((c, i) => decodeStatus(c, `welcome.channels[${i}]`)),
        },
      };
    }
    case "push": {
      const p = obj(m, "push");
      return {
        type: "push",
        push: {
          entries: list(p.entries, "push.entries").map((e, i) => decodeEntry(e, `push.entries[${i}]`)),
          positions: list(p.positions, "push.positions").map((x, i) => decodePosition(x, `push.positions[${i}]`)),
        },
      };
    }
    case "write_result":
      return { type: "write_result", result: decodeWriteResult(m) };
    case "ping":
      return { type: "ping", nonce: nonce(obj(m, "ping").nonce) };
    case "pong":
      return { type: "pong", nonce: nonce(obj(m, "pong").nonce) };
    case "error":
      return { type: "error", error: decodeError(m) };
    default:
      return { type: "other", name };
  }
}

function encodeRecord(r: WireRecord): Record<string, unknown> {
  const o: Record<string, unknown> = { id: r.id };
  if (r.baseSeq) o.base_seq = r.baseSeq;
  if (r.data !== undefined) o.data = new RawJSON(r.data);
  return o;
}

/** The JSON of a write frame's body, `{"write_id", "changes"}`. */
export function encodeWriteBody(w: WriteFrame): Record<string, unknown> {
  return {
    write_id: w.writeId,
    changes: w.changes.map((cs) => {
      const o: Record<string, unknown> = { biz: cs.biz };
      if (cs.target) o.target = cs.target;
      if (cs.created.length) o.created = cs.created.map(encodeRecord);
      if (cs.updated.length) o.updated = cs.updated.map(encodeRecord);
      if (cs.deleted.length) o.deleted = cs.deleted.map(encodeRecord);
      return o;
    }),
  };
}

/** The frames this SDK sends, as JSON text. */
export const encode = {
  hello(h: {
    token: string;
    deviceId: string;
    platform?: string;
    appVersion?: string;
    bizzes: string[];
    positions: ChannelPosition[];
  }): string {
    const o: Record<string, unknown> = { versions: [PROTOCOL_VERSION], token: h.token, device_id: h.deviceId };
    if (h.platform) o.platform = h.platform;
    if (h.appVersion) o.app_version = h.appVersion;
    o.bizzes = h.bizzes;
    if (h.positions.length) o.positions = h.positions.map((p) => ({ channel: p.channel, epoch: p.epoch, seq: p.seq }));
    return stringifyJSON({ hello: o });
  },
  ack(positions: ChannelPosition[]): string {
    return stringifyJSON({ ack: { positions: positions.map((p) => ({ channel: p.channel, epoch: p.epoch, seq: p.seq })) } });
  },
  pong(nonce: number | bigint): string {
    return stringifyJSON({ pong: { nonce } });
  },
  write(w: WriteFrame): string {
    return stringifyJSON({ write: encodeWriteBody(w) });
  },
};

/** What a client does when a connection ends with a close code. */
export type CloseAction = "reconnect" | "resync" | "stop";

/** The known close codes (docs/protocol.md, section 13). */
export const CloseCode = {
  normal: 1000,
  goingAway: 3000,
  slowConsumer: 3001,
  heartbeatTimeout: 3002,
  unavailable: 3003,
  internal: 3004,
  resync: 3500,
  badRequest: 4000,
  unauthorized: 4001,
  forbidden: 4003,
  unsupportedVersion: 4005,
  tooLarge: 4009,
} as const;

/**
 * The action for a close code, by the protocol's table and, for codes it
 * does not list, by their range. A connection lost with no code is 1006
 * (reconnect).
 */
export function closeAction(code: number): CloseAction {
  switch (code) {
    case 1000:
      return "stop";
    case 1002:
    case 1003:
    case 1007:
    case 1008:
    case 1009: // some stacks report an oversized frame as 1009: like 4009
    case 1010:
      return "stop";
  }
  if (code >= 3000 && code <= 3499) return "reconnect";
  if (code >= 3500 && code <= 3999) return "resync";
  if (code >= 4000 && code <= 4999) return "stop";
  return "reconnect";
}

/** The action of a write_result's whole-write error code: "reconnect" means send it again later. */
export function isRetryableCode(code: string): boolean {
  return code === "unavailable" || code === "rate_limited" || code === "internal";
}
