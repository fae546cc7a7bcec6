// What the SDK takes from its platform, typed here so that the core
// compiles against the ECMAScript library alone (no DOM, no Node types):
// timers, fetch, WebSocket, randomness. Every one of them exists in
// browsers, Node 20+ (WebSocket from Node 22, or the `ws` package) and
// React Native.

/** The parts of a WebSocket (the WHATWG API) the SDK uses. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** Opens a WebSocket; the default is `new globalThis.WebSocket(url, protocols)`. */
export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

/** The parts of an AbortSignal the SDK uses. */
export interface AbortSignalLike {
  readonly aborted: boolean;
}

/** The parts of a fetch Response the SDK uses. */
export interface ResponseLike {
  readonly status: number;
  readonly ok: boolean;
  readonly headers: { get(name: string): string | null };
  text(): Promise<string>;
  readonly body?: {
    getReader(): { read(): Promise<{ done: boolean; value?: Uint8Array }>; cancel(reason?: unknown): Promise<void> };
  } | null;
}

/** The fetch function the SDK uses; the default is `globalThis.fetch`. */
export type FetchLike = (
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignalLike },
) => Promise<ResponseLike>;

interface Globals {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(h: unknown): void;
  WebSocket?: new (url: string, protocols: string[]) => WebSocketLike;
  fetch?: FetchLike;
  AbortController?: new () => { signal: AbortSignalLike; abort(reason?: unknown): void };
  TextDecoder?: new (label?: string) => { decode(b?: Uint8Array, opts?: { stream?: boolean }): string };
  crypto?: { getRandomValues?(b: Uint8Array): Uint8Array };
}

const g = globalThis as unknown as Globals;

export type Timer = unknown;

export function after(ms: number, fn: () => void): Timer {
  return g.setTimeout(fn, Math.max(0, ms));
}

export function cancel(t: Timer | null | undefined): void {
  if (t !== null && t !== undefined) g.clearTimeout(t);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => after(ms, resolve));
}

export function defaultWebSocket(): WebSocketFactory | null {
  const WS = g.WebSocket;
  return WS ? (url, protocols) => new WS(url, protocols) : null;
}

export function defaultFetch(): FetchLike | null {
  const f = g.fetch;
  return f ? (url, init) => f(url, init) : null;
}

export function abortController(): { signal: AbortSignalLike; abort(): void } {
  if (!g.AbortController) throw new Error("no AbortController on this platform");
  return new g.AbortController();
}

export function textDecoder(): { decode(b?: Uint8Array, opts?: { stream?: boolean }): string } {
  if (!g.TextDecoder) throw new Error("no TextDecoder on this platform: SSE needs one");
  return new g.TextDecoder("utf-8");
}

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  if (g.crypto?.getRandomValues) return g.crypto.getRandomValues(b);
  for (let i = 0; i < n; i++) b[i] = Math.floor(Math.random() * 256);
  return b;
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A ULID: 48 bits of milliseconds, then 80 random bits, in Crockford base32. */
export function ulid(nowMs: number = Date.now()): string {
  let t = "";
  let ms = nowMs;
  for (let i = 0; i < 10; i++) {
    t = CROCKFORD[ms % 32]! + t;
    ms = Math.floor(ms / 32);
  }
  const r = randomBytes(10);
  // 80 bits = 16 base32 characters.
  let bits = 0;
  let acc = 0;
  let s = "";
  for (const byte of r) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      s += CROCKFORD[(acc >> (bits - 5)) & 31]!;
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  return t + s;
}
