// The public types of the SDK.

import type { Position } from "./wire.js";

export type { Position } from "./wire.js";

/** One oplog entry handed to the app. */
export interface Entry {
  /** The channel, `biz/target`, for example `chat/user:u1`. */
  channel: string;
  /** 1, 2, 3… within the channel's epoch; 0 for a non-persistent biz (live only, never deduplicated). */
  seq: number;
  /** `msg`, `put` or `delete`. */
  op: "msg" | "put" | "delete" | string;
  /** The record id of a put or delete ("" when none). */
  key: string;
  /** The data, parsed; undefined when the entry has none. */
  data: unknown;
  /** The data as the server sent it (raw JSON text); null when absent. */
  json: string | null;
  /** When it was published, Unix milliseconds (server clock). */
  createdAt: number;
  /** When it expires, Unix milliseconds; 0 means never. */
  expiresAt: number;
  /** `api`, or `device:<id>` for a record a device uploaded. */
  origin: string;
}

/** A local change to a record, as put or delete made it. */
export interface Change {
  channel: string;
  id: string;
  op: "put" | "delete";
  /** The whole record for a put. */
  data?: unknown;
}

/** A local change the server did not take as it was (conflict by base_seq). */
export interface Conflict extends Change {
  /** Later unsent local changes to the same record, dropped with it. */
  dropped: Change[];
  /** A merge biz applied the rest of the change and kept the server's `field`. */
  saved: boolean;
  field: string;
  code: string;
  message: string;
  /** The server's record as a put or delete entry; null when not sent. */
  current: Entry | null;
}

/** A local change the server refused for another reason; the record was rolled back. */
export interface WriteError extends Change {
  field: string;
  /** invalid_id, invalid_data, too_large, invalid, exists, not_found, forbidden, not_writable, unknown_biz, rejected… */
  code: string;
  message: string;
  current: Entry | null;
}

/** A record as the local store holds it. */
export interface LocalRecord {
  id: string;
  /** The seq of the server version it is (or is based on, for a pending local change); 0 when unknown. */
  seq: number;
  data: unknown;
  createdAt: number;
  expiresAt: number;
  origin: string;
  /** True while a local change to it waits for its result. */
  pending: boolean;
}

/** A change of the local records, as the `change` event reports it (after the commit). */
export interface RecordChange {
  channel: string;
  id: string;
  op: "put" | "delete";
  /** The record's data after the change (put). */
  data?: unknown;
  seq: number;
  /** The change was made on this device (put/delete, or a rollback of one). */
  local: boolean;
}

/** The connection's state. */
export type ConnectionState =
  /** Not connected: waiting to reconnect, or not started. */
  | "disconnected"
  /** Connecting, or waiting for the welcome (or the first HTTP sync). */
  | "connecting"
  /** Streaming: over WebSocket, or over SSE and HTTP uploads. */
  | "connected"
  /** Stopped for a close whose action is stop, or by stop()/close(). */
  | "stopped";

/** Which transport carries the session. */
export type TransportKind = "websocket" | "http";

/**
 * The app's handler, called inside the local transaction that applies a
 * batch of new entries (see the README, "The handler contract").
 */
export type EntriesHandler = (entries: Entry[], tx: AppTx) => void | Promise<void>;

/**
 * Access to the app's own key space ("app" store) inside the transaction
 * that applies a batch: what the handler writes here commits atomically
 * with the entries' records and positions, or not at all.
 */
export interface AppTx {
  get(key: string): Promise<unknown | undefined>;
  put(key: string, value: unknown): void;
  delete(key: string): void;
}

/** Why the token callback is called. */
export interface TokenRequest {
  /** "connect" for every (re)connect, "unauthorized" after the server refused the last token. */
  reason: "connect" | "unauthorized";
}

/** An error the client reports through the `error` event and `lastError`. */
export class SyncpointError extends Error {
  constructor(
    message: string,
    /** The close code or, for HTTP, the status mapped to one (0 when none). */
    readonly code: number = 0,
    /** The server's error code (`reason`), when it gave one. */
    readonly reason: string = "",
  ) {
    super(message);
    this.name = "SyncpointError";
  }
}

/** Positions by channel. */
export type Positions = Record<string, Position>;
