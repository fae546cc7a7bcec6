// The IndexedDB storage adapter, for browsers.

import { STORE_NAMES, type StorageAdapter, type StorageOp, type StoreName } from "./storage.js";

// The minimal IndexedDB surface this adapter uses, so that the package
// compiles without the DOM library and runs on any IndexedDB (a browser's,
// or fake-indexeddb in Node).
interface IDBRequestLike<T = unknown> {
  result: T;
  error: unknown;
  onsuccess: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
interface IDBOpenRequestLike extends IDBRequestLike<IDBDatabaseLike> {
  onupgradeneeded: ((ev: unknown) => void) | null;
  onblocked: ((ev: unknown) => void) | null;
}
interface IDBObjectStoreLike {
  get(key: unknown): IDBRequestLike;
  put(value: unknown, key: unknown): IDBRequestLike;
  delete(key: unknown): IDBRequestLike;
  getAll(range?: unknown): IDBRequestLike<unknown[]>;
  getAllKeys(range?: unknown): IDBRequestLike<unknown[]>;
}
interface IDBTransactionLike {
  objectStore(name: string): IDBObjectStoreLike;
  oncomplete: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onabort: ((ev: unknown) => void) | null;
  error: unknown;
  abort(): void;
}
interface IDBDatabaseLike {
  objectStoreNames: { contains(name: string): boolean };
  createObjectStore(name: string): unknown;
  transaction(names: string | string[], mode: "readonly" | "readwrite", options?: { durability?: string }): IDBTransactionLike;
  close(): void;
  onversionchange: ((ev: unknown) => void) | null;
}
/** The parts of an IDBFactory (window.indexedDB) this adapter needs. */
export interface IDBFactoryLike {
  open(name: string, version?: number): IDBOpenRequestLike;
}
/** The parts of IDBKeyRange this adapter needs. */
export interface IDBKeyRangeLike {
  bound(lower: unknown, upper: unknown, lowerOpen?: boolean, upperOpen?: boolean): unknown;
}

/** Options of IndexedDBStorage.open. */
export interface IndexedDBOptions {
  /** The database name; one per device (and per Client). Default "syncpoint". */
  name?: string;
  /** The IndexedDB factory; default globalThis.indexedDB. */
  indexedDB?: IDBFactoryLike;
  /** IDBKeyRange; default globalThis.IDBKeyRange. */
  keyRange?: IDBKeyRangeLike;
}

const VERSION = 1;

function req<T>(r: IDBRequestLike<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/**
 * Storage in IndexedDB: one database with an object store per key space.
 * Each commit is one readwrite transaction over every store, asking for
 * strict durability where the browser supports it, so a commit that
 * resolved survives a reload or a crash, and one that failed changed
 * nothing.
 */
export class IndexedDBStorage implements StorageAdapter {
  private constructor(
    private db: IDBDatabaseLike,
    private range: IDBKeyRangeLike,
  ) {
    // Another tab upgrading the database: let it.
    db.onversionchange = () => db.close();
  }

  /** Opens (and creates when missing) the database. */
  static async open(opts: IndexedDBOptions = {}): Promise<IndexedDBStorage> {
    const g = globalThis as unknown as { indexedDB?: IDBFactoryLike; IDBKeyRange?: IDBKeyRangeLike };
    const factory = opts.indexedDB ?? g.indexedDB;
    const range = opts.keyRange ?? g.IDBKeyRange;
    if (!factory || !range) throw new Error("IndexedDBStorage: no IndexedDB here; pass options.indexedDB and options.keyRange");
    const r = factory.open(opts.name ?? "syncpoint", VERSION);
    r.onupgradeneeded = () => {
      const db = r.result;
      for (const s of STORE_NAMES) if (!db.objectStoreNames.contains(s)) db.createObjectStore(s);
    };
    const db = await new Promise<IDBDatabaseLike>((resolve, reject) => {
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
      r.onblocked = () => reject(new Error("IndexedDBStorage: the database is held open by an older version in another tab"));
    });
    return new IndexedDBStorage(db, range);
  }

  private prefixRange(prefix: string): unknown {
    // Every string that starts with prefix sorts at or after it and before
    // prefix + U+FFFF U+FFFF (ids here never hold U+FFFF).
    return this.range.bound(prefix, prefix + "\uffff\uffff", false, true);
  }

  async get(store: StoreName, key: string): Promise<unknown | undefined> {
    const tx = this.db.transaction(store, "readonly");
    return req(tx.objectStore(store).get(key));
  }

  async list(store: StoreName, prefix = ""): Promise<Array<[string, unknown]>> {
    const tx = this.db.transaction(store, "readonly");
    const s = tx.objectStore(store);
    const range = prefix === "" ? undefined : this.prefixRange(prefix);
    const [keys, values] = await Promise.all([req(s.getAllKeys(range)), req(s.getAll(range))]);
    return keys.map((k, i) => [k as string, values[i]]);
  }

  commit(ops: readonly StorageOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    const names = [...new Set(ops.map((o) => o.store))];
    return new Promise((resolve, reject) => {
      let tx: IDBTransactionLike;
      try {
        tx = this.db.transaction(names, "readwrite", { durability: "strict" });
      } catch (e) {
        reject(e);
        return;
      }
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error ?? new Error("IndexedDBStorage: commit failed"));
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDBStorage: commit aborted"));
      try {
        for (const o of ops) {
          const s = tx.objectStore(o.store);
          if (o.op === "put") s.put(o.value, o.key);
          else if (o.op === "delete") s.delete(o.key);
          else s.delete(this.prefixRange(o.prefix));
        }
      } catch (e) {
        // A value that cannot be cloned: nothing of the commit stays.
        try {
          tx.abort();
        } catch {
          // already finished
        }
        reject(e);
      }
    });
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
