// The storage adapter: where the SDK keeps positions, records, the outbox
// and its notices, durably and atomically.

/** The SDK's key spaces ("object stores"). */
export type StoreName = "meta" | "positions" | "records" | "server" | "outbox" | "notices" | "app";

/** Every store, for adapters that create them up front. */
export const STORE_NAMES: readonly StoreName[] = ["meta", "positions", "records", "server", "outbox", "notices", "app"];

/** One change of a commit. */
export type StorageOp =
  | { op: "put"; store: StoreName; key: string; value: unknown }
  | { op: "delete"; store: StoreName; key: string }
  | { op: "deletePrefix"; store: StoreName; prefix: string };

/**
 * Where the SDK keeps its state. Implement it to use another store (SQLite
 * on React Native, a file in Node, ...).
 *
 * The contract, which the SDK's exactly-once guarantee rests on:
 *
 * - `commit(ops)` applies every op, in order, or none of them, and once
 *   its promise resolves the change survives a crash or a reload. A commit
 *   that rejects has changed nothing.
 * - `get` and `list` read what has been committed. `list` returns the
 *   pairs whose key starts with `prefix` (all when it is absent), in
 *   ascending order of key (JS string order).
 * - Values are plain JSON-compatible data (objects, arrays, strings,
 *   finite numbers, booleans, null). The adapter keeps its own copy: the
 *   SDK may change an object after passing it to commit.
 * - One Client uses one adapter at a time, and nothing else writes the
 *   SDK's stores (the "app" store is written only through the Client).
 */
export interface StorageAdapter {
  get(store: StoreName, key: string): Promise<unknown | undefined>;
  list(store: StoreName, prefix?: string): Promise<Array<[string, unknown]>>;
  commit(ops: readonly StorageOp[]): Promise<void>;
  /** Releases the store; the adapter is not used after. */
  close(): Promise<void>;
}

/**
 * Storage in memory: nothing survives the process. Share one instance
 * between Clients to model a reload in tests (close one, open the next on
 * the same storage).
 */
export class MemoryStorage implements StorageAdapter {
  private stores = new Map<StoreName, Map<string, string>>();

  private store(name: StoreName): Map<string, string> {
    let s = this.stores.get(name);
    if (!s) this.stores.set(name, (s = new Map()));
    return s;
  }

  async get(store: StoreName, key: string): Promise<unknown | undefined> {
    const v = this.store(store).get(key);
    return v === undefined ? undefined : JSON.parse(v);
  }

  async list(store: StoreName, prefix = ""): Promise<Array<[string, unknown]>> {
    const out: Array<[string, unknown]> = [];
    for (const [k, v] of this.store(store)) if (k.startsWith(prefix)) out.push([k, JSON.parse(v)]);
    out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return out;
  }

  async commit(ops: readonly StorageOp[]): Promise<void> {
    // Encode first, so a value that cannot be stored changes nothing.
    const encoded = ops.map((o) => (o.op === "put" ? JSON.stringify(o.value) : ""));
    ops.forEach((o, i) => {
      const s = this.store(o.store);
      if (o.op === "put") s.set(o.key, encoded[i]!);
      else if (o.op === "delete") s.delete(o.key);
      else for (const k of [...s.keys()]) if (k.startsWith(o.prefix)) s.delete(k);
    });
  }

  async close(): Promise<void> {}
}
