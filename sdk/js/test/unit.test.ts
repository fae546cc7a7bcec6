// Unit tests of the codec, the close-code table and the SSE parser.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { compareUTF8, parseJSON, RawJSON, recordHash, sha256, stringifyJSON, utf8 } from "../src/json.js";
import { SSEParser } from "../src/http.js";
import { closeAction, decodeFrame, encode, ProtocolError } from "../src/wire.js";

describe("JSON", () => {
  it("keeps data raw and big integers exact", () => {
    const text = '{"push": {"entries": [{"channel": "c/global", "seq": 1, "op": "put", "key": "k", "data": {"b": 1.0, "1": [ "x" ] }}]}}';
    const f = decodeFrame(text);
    expect(f.type).toBe("push");
    if (f.type !== "push") return;
    expect(f.push.entries[0]!.data).toBe('{"b": 1.0, "1": [ "x" ] }');
    const ping = decodeFrame('{"ping": {"nonce": 1700000000123456789}}');
    expect(ping.type === "ping" && ping.nonce).toBe(1700000000123456789n);
    expect(encode.pong(1700000000123456789n)).toBe('{"pong":{"nonce":1700000000123456789}}');
  });

  it("refuses seqs a JS number cannot hold, and malformed frames", () => {
    expect(() => decodeFrame('{"push": {"entries": [{"channel": "c/global", "seq": 9007199254740993}]}}')).toThrow(ProtocolError);
    expect(() => decodeFrame('{"ping": {}, "pong": {}}')).toThrow(ProtocolError);
    expect(() => decodeFrame('{"push": null}')).toThrow(ProtocolError);
    expect(() => decodeFrame('{"push": {"entries": [{"seq": -1}]}}')).toThrow(ProtocolError);
    expect(() => parseJSON('{"a": 1} x')).toThrow();
    expect(decodeFrame('{"welcome": {"version": 1, "unknown": {"x": [1, 2]}}}').type).toBe("welcome");
    expect(decodeFrame('{"future": {}}').type).toBe("other");
  });

  it("writes raw JSON as it is", () => {
    expect(stringifyJSON({ a: new RawJSON('{"x": 1.0}'), b: [1, "s"], c: undefined })).toBe('{"a":{"x": 1.0},"b":[1,"s"]}');
  });

  it("hashes as the server does", () => {
    for (const s of ["", "abc", "é€𝄞", "x".repeat(1000)]) {
      expect(Buffer.from(sha256(utf8(s))).toString("hex")).toBe(createHash("sha256").update(s).digest("hex"));
    }
    // The worked example of docs/http-sync-reconcile.md.
    expect(recordHash('{"text":"buy milk"}')).toBe("bGFGs5r8nR3RJ0ns");
    expect(recordHash('{"text":"call Ada"}')).toBe("5yRA30wf10zfnLHx");
  });

  it("orders ids by their UTF-8 bytes", () => {
    const ids = ["b", "a", "\uffff", "𝄞", "\ue000"];
    const byBytes = [...ids].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect([...ids].sort(compareUTF8)).toEqual(byBytes);
  });
});

describe("close codes", () => {
  it("follows the table of protocol.md section 13", () => {
    const want: Record<number, string> = {
      1000: "stop",
      1001: "reconnect",
      1002: "stop",
      1003: "stop",
      1006: "reconnect",
      1007: "stop",
      1008: "stop",
      1009: "stop",
      1010: "stop",
      1011: "reconnect",
      3000: "reconnect",
      3001: "reconnect",
      3002: "reconnect",
      3003: "reconnect",
      3004: "reconnect",
      3499: "reconnect",
      3500: "resync",
      3999: "resync",
      4000: "stop",
      4001: "stop",
      4003: "stop",
      4005: "stop",
      4009: "stop",
      4999: "stop",
    };
    for (const [code, action] of Object.entries(want)) expect([code, closeAction(Number(code))]).toEqual([code, action]);
  });
});

describe("SSE parser", () => {
  it("splits events across chunks and line endings", () => {
    const p = new SSEParser();
    const out = [
      ...p.feed("retry: 3000\n\nid: A\nevent: entry\ndata: {\"a\":"),
      ...p.feed("1}\r\n\r"),
      ...p.feed("\n: heartbeat\n\nevent: close\ndata: x\ndata: y\n\n"),
    ];
    expect(out).toEqual([
      { event: "entry", data: '{"a":1}', id: "A" },
      { event: "close", data: "x\ny", id: "A" },
    ]);
  });
});
