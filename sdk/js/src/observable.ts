/** A value that changes over time, with simple subscribe/unsubscribe. */
export interface Observable<T> {
  /** The current value. */
  get(): T;
  /**
   * Calls listener with every new value (not the current one, unless
   * immediate is true). Returns the function that unsubscribes.
   */
  subscribe(listener: (value: T) => void, immediate?: boolean): () => void;
}

/** An Observable the SDK sets. */
export class Value<T> implements Observable<T> {
  private listeners = new Set<(value: T) => void>();
  constructor(
    private value: T,
    private equal: (a: T, b: T) => boolean = Object.is,
  ) {}

  get(): T {
    return this.value;
  }

  set(v: T): void {
    if (this.equal(this.value, v)) return;
    this.value = v;
    for (const l of [...this.listeners]) {
      try {
        l(v);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  subscribe(listener: (value: T) => void, immediate = false): () => void {
    this.listeners.add(listener);
    if (immediate) listener(this.value);
    return () => {
      this.listeners.delete(listener);
    };
  }
}

/** Shallow equality of two records of numbers. */
export function sameRecord(a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => a[k] === b[k]);
}

/** A typed event emitter. */
export class Emitter<E extends Record<string, unknown>> {
  private listeners = new Map<keyof E, Set<(v: never) => void>>();

  on<K extends keyof E>(event: K, listener: (value: E[K]) => void): () => void {
    let s = this.listeners.get(event);
    if (!s) this.listeners.set(event, (s = new Set()));
    s.add(listener as (v: never) => void);
    return () => {
      s.delete(listener as (v: never) => void);
    };
  }

  emit<K extends keyof E>(event: K, value: E[K]): void {
    const s = this.listeners.get(event);
    if (!s) return;
    for (const l of [...s]) {
      try {
        (l as (v: E[K]) => void)(value);
      } catch {
        // A listener's failure is its own.
      }
    }
  }
}
