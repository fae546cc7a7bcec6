// @syncpoint/client: the TypeScript SDK for syncpoint devices.

export { SyncpointClient, newId } from "./client.js";
export type { ClientConfig, ClientEvents, Logger } from "./client.js";
export { MemoryStorage, STORE_NAMES } from "./storage.js";
export type { StorageAdapter, StorageOp, StoreName } from "./storage.js";
export { IndexedDBStorage } from "./indexeddb.js";
export type { IndexedDBOptions, IDBFactoryLike, IDBKeyRangeLike } from "./indexeddb.js";
export type { Observable } from "./observable.js";
export type { WebSocketLike, WebSocketFactory, FetchLike, ResponseLike, AbortSignalLike } from "./env.js";
export { SyncpointError } from "./types.js";
export type {
  AppTx,
  Change,
  Conflict,
  ConnectionState,
  EntriesHandler,
  Entry,
  LocalRecord,
  Position,
  Positions,
  RecordChange,
  TokenRequest,
  TransportKind,
  WriteError,
} from "./types.js";
export { closeAction, CloseCode, PROTOCOL_VERSION, SUBPROTOCOL_JSON } from "./wire.js";
export type { CloseAction } from "./wire.js";
export { recordHash } from "./json.js";
