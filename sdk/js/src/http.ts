// HTTP requests as the device: one-shot sync, uploads, reconcile, SSE.

import { HTTPError, type ReconcileAnswer } from "./engine.js";
import type { AbortSignalLike, FetchLike, ResponseLike } from "./env.js";
import { RawJSON, stringifyJSON, type JSONValue } from "./json.js";
import { decodeEntry, parseWire, ProtocolError } from "./wire.js";

export interface DeviceHTTPConfig {
  server: string;
  fetch: FetchLike;
  deviceId: string;
  platform?: string;
  appVersion?: string;
}

type Obj = { [k: string]: JSONValue };

export function asObj(v: JSONValue | undefined): Obj {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof RawJSON) ? (v as Obj) : {};
}

export function asList(v: JSONValue | undefined): JSONValue[] {
  return Array.isArray(v) ? v : [];
}

export function asStr(v: JSONValue | undefined): string {
  return typeof v === "string" ? v : "";
}

export function asNum(v: JSONValue | undefined): number {
  if (typeof v === "bigint") throw new ProtocolError(`${v} is beyond 2^53, which this SDK cannot keep exactly`);
  return typeof v === "number" ? v : 0;
}

/** The close code an HTTP refusal acts like (its action decides what to do). */
export function closeCodeOfStatus(status: number): number {
  switch (status) {
    case 400:
    case 404:
    case 422:
      return 4000;
    case 401:
      return 4001;
    case 403:
      return 4003;
    case 413:
      return 4009;
    case 429:
    case 503:
      return 3003;
    default:
      return status >= 500 ? 3004 : 3003;
  }
}

export class DeviceHTTP {
  constructor(private readonly cfg: DeviceHTTPConfig) {}

  url(path: string): string {
    return this.cfg.server.replace(/\/+$/, "") + path;
  }

  headers(token: string, json: boolean): Record<string, string> {
    const h: Record<string, string> = { Authorization: "Bearer " + token, "X-Device-Id": this.cfg.deviceId };
    if (json) h["Content-Type"] = "application/json";
    if (this.cfg.platform) h["X-Device-Platform"] = this.cfg.platform;
    if (this.cfg.appVersion) h["X-Device-App-Version"] = this.cfg.appVersion;
    return h;
  }

  /** Throws an HTTPError for an answer that is not 2xx. */
  static async check(resp: ResponseLike): Promise<void> {
    if (resp.status >= 200 && resp.status < 300) return;
    const text = await resp.text().catch(() => "");
    let code = "internal";
    let message = text.slice(0, 200).trim();
    try {
      const e = JSON.parse(text) as { error?: { code?: string; message?: string } };
      if (e.error?.code) [code, message] = [e.error.code, e.error.message ?? ""];
    } catch {
      // not JSON
    }
    throw new HTTPError(resp.status, code, message);
  }

  /** POSTs body as JSON and returns the parsed answer (raw `data` kept). */
  async post(path: string, body: unknown, token: string, signal?: AbortSignalLike): Promise<JSONValue> {
    const resp = await this.cfg.fetch(this.url(path), {
      method: "POST",
      headers: this.headers(token, true),
      body: typeof body === "string" ? body : stringifyJSON(body),
      signal,
    });
    await DeviceHTTP.check(resp);
    return parseWire(await resp.text());
  }

  async reconcile(body: Record<string, unknown>, token: string): Promise<ReconcileAnswer> {
    const a = asObj(await this.post("/v1/sync/reconcile", body, token));
    const pos = asObj(a.position);
    return {
      put: asList(a.put).map((x) => {
        const p = decodeEntry(x, "put");
        const o = asObj(x);
        return { id: asStr(o.id), seq: p.seq, data: p.data, createdAt: p.createdAt, expiresAt: p.expiresAt, origin: p.origin };
      }),
      same: asList(a.same).map((x) => {
        const o = asObj(x);
        return { id: asStr(o.id), seq: asNum(o.seq), expiresAt: asNum(o.expires_at) };
      }),
      stale: asList(a.stale).map(asStr),
      delete: asList(a.delete).map(asStr),
      position: { channel: asStr(pos.channel), epoch: asStr(pos.epoch), seq: asNum(pos.seq) },
      nextId: typeof a.next_id === "string" ? a.next_id : null,
    };
  }
}

/** One Server-Sent Event. */
export interface SSEEvent {
  event: string;
  data: string;
  id: string | null;
}

/**
 * Splits a text/event-stream into events (the WHATWG rules): lines end in
 * CRLF, LF or CR; `data` lines join with LF; comments start with ':'.
 */
export class SSEParser {
  private buf = "";
  private event = "";
  private data: string[] = [];
  private id: string | null = null;
  private sawCR = false;

  /** Feeds decoded text; returns the events it completed. */
  feed(text: string): SSEEvent[] {
    const out: SSEEvent[] = [];
    let s = this.buf + text;
    if (this.sawCR && s.startsWith("\n")) s = s.slice(1);
    this.sawCR = false;
    let start = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (c !== "\n" && c !== "\r") continue;
      this.line(s.slice(start, i), out);
      if (c === "\r") {
        if (i + 1 < s.length) {
          if (s[i + 1] === "\n") i++;
        } else this.sawCR = true;
      }
      start = i + 1;
    }
    this.buf = s.slice(start);
    return out;
  }

  private line(l: string, out: SSEEvent[]): void {
    if (l === "") {
      if (this.data.length > 0 || this.event !== "") {
        out.push({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
      }
      this.event = "";
      this.data = [];
      return;
    }
    if (l.startsWith(":")) return;
    const i = l.indexOf(":");
    const field = i < 0 ? l : l.slice(0, i);
    let value = i < 0 ? "" : l.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\u0000")) this.id = value;
  }
}
