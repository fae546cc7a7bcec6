// A small JSON reader and writer for the protocol's frames.
//
// JSON.parse would do for most of a frame, but not for two things the
// protocol needs:
//
//  - `data` members are raw JSON that the SDK keeps byte for byte, so that
//    the reconcile hash (a SHA-256 of the data as received) matches the
//    server's. parseJSON hands the text of every member named in rawKeys
//    back as a RawJSON instead of parsing it.
//  - Integers above 2^53 lose precision in a JS number. Ping nonces are
//    such integers (Unix nanoseconds), and the pong must carry the same
//    one back. parseJSON returns integers beyond Number.MAX_SAFE_INTEGER as
//    bigint; seqs are refused where they appear as bigint (see wire.ts).

/** Raw JSON text, kept as it arrived and written out as it is. */
export class RawJSON {
  constructor(readonly text: string) {}
  /** The parsed value. */
  value(): unknown {
    return JSON.parse(this.text);
  }
}

/** A value parsed by parseJSON. */
export type JSONValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | RawJSON
  | JSONValue[]
  | { [k: string]: JSONValue };

class Parser {
  i = 0;
  constructor(
    readonly s: string,
    readonly rawKeys: ReadonlySet<string>,
  ) {}

  fail(msg: string): never {
    throw new SyntaxError(`malformed JSON at ${this.i}: ${msg}`);
  }

  ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else break;
    }
  }

  value(): JSONValue {
    this.ws();
    const c = this.s[this.i];
    switch (c) {
      case "{":
        return this.object();
      case "[":
        return this.array();
      case '"':
        return this.string();
      case "t":
        return this.word("true", true);
      case "f":
        return this.word("false", false);
      case "n":
        return this.word("null", null);
      default:
        if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
        return this.fail(c === undefined ? "unexpected end" : `unexpected ${JSON.stringify(c)}`);
    }
  }

  word<T>(w: string, v: T): T {
    if (this.s.startsWith(w, this.i)) {
      this.i += w.length;
      return v;
    }
    return this.fail(`want ${w}`);
  }

  number(): number | bigint {
    const re = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    re.lastIndex = this.i;
    const m = re.exec(this.s);
    if (!m) return this.fail("bad number");
    this.i = re.lastIndex;
    const text = m[0];
    if (m[1] === undefined && m[2] === undefined) {
      const n = Number(text);
      if (Number.isSafeInteger(n)) return n;
      return BigInt(text);
    }
    const n = Number(text);
    if (!Number.isFinite(n)) this.fail("number out of range");
    return n;
  }

  string(): string {
    // The fast path: find the closing quote and let JSON.parse unescape.
    const s = this.s;
    let j = this.i + 1;
    for (;;) {
      const c = s.charCodeAt(j);
      if (Number.isNaN(c)) this.fail("unterminated string");
      if (c === 0x22) break;
      if (c === 0x5c) j += 2;
      else j++;
    }
    const lit = s.slice(this.i, j + 1);
    this.i = j + 1;
    try {
      return JSON.parse(lit) as string;
    } catch {
      return this.fail("bad string");
    }
  }

  object(): { [k: string]: JSONValue } {
    const out: { [k: string]: JSONValue } = {};
    this.i++;
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail("want a member name");
      const k = this.string();
      this.ws();
      if (this.s[this.i] !== ":") this.fail("want ':'");
      this.i++;
      let v: JSONValue;
      if (this.rawKeys.has(k)) {
        this.ws();
        const start = this.i;
        skipValue(this);
        v = new RawJSON(this.s.slice(start, this.i));
      } else {
        v = this.value();
      }
      // A member that appears twice takes its last value.
      Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
      this.ws();
      const c = this.s[this.i];
      this.i++;
      if (c === "}") return out;
      if (c !== ",") this.fail("want ',' or '}'");
    }
  }

  array(): JSONValue[] {
    const out: JSONValue[] = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.ws();
      const c = this.s[this.i];
      this.i++;
      if (c === "]") return out;
      if (c !== ",") this.fail("want ',' or ']'");
    }
  }
}

// skipValue moves past one value without building it (a raw member).
function skipValue(p: Parser): void {
  const s = p.s;
  p.ws();
  const c = s[p.i];
  if (c === "{" || c === "[") {
    let depth = 0;
    while (p.i < s.length) {
      const d = s[p.i];
      if (d === '"') {
        p.string();
        continue;
      }
      if (d === "{" || d === "[") depth++;
      else if (d === "}" || d === "]") {
        depth--;
        if (depth === 0) {
          p.i++;
          return;
        }
      }
      p.i++;
    }
    p.fail("unterminated value");
  }
  p.value();
}

/**
 * Parses JSON text. Members named in rawKeys are returned as RawJSON (their
 * text, unparsed); integers beyond 2^53 as bigint.
 */
export function parseJSON(text: string, rawKeys: ReadonlySet<string> = new Set()): JSONValue {
  const p = new Parser(text, rawKeys);
  const v = p.value();
  p.ws();
  if (p.i !== text.length) p.fail("trailing text");
  return v;
}

/** Writes v as JSON; RawJSON is written as it is, bigint as its digits. */
export function stringifyJSON(v: unknown): string {
  if (v instanceof RawJSON) return v.text;
  if (typeof v === "bigint") return v.toString();
  if (Array.isArray(v)) return "[" + v.map((x) => (x === undefined ? "null" : stringifyJSON(x))).join(",") + "]";
  if (v !== null && typeof v === "object") {
    const parts: string[] = [];
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) continue;
      parts.push(JSON.stringify(k) + ":" + stringifyJSON(x));
    }
    return "{" + parts.join(",") + "}";
  }
  const s = JSON.stringify(v);
  return s === undefined ? "null" : s;
}

/** The UTF-8 bytes of s (lone surrogates become U+FFFD). */
export function utf8(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      } else c = 0xfffd;
    } else if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

/** Compares two strings by their UTF-8 bytes, as the server orders ids. */
export function compareUTF8(a: string, b: string): number {
  // UTF-16 order differs from UTF-8 order only where a surrogate meets a
  // code unit at or above U+E000; compare code points instead.
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

/** SHA-256 of bytes (pure JS: no WebCrypto, which React Native lacks). */
export function sha256(msg: Uint8Array): Uint8Array {
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const len = msg.length;
  const total = Math.ceil((len + 9) / 64) * 64;
  const buf = new Uint8Array(total);
  buf.set(msg);
  buf[len] = 0x80;
  const bits = len * 8;
  const dv = new DataView(buf.buffer);
  dv.setUint32(total - 8, Math.floor(bits / 0x100000000));
  dv.setUint32(total - 4, bits >>> 0);
  const w = new Uint32Array(64);
  for (let off = 0; off < total; off += 64) {
    for (let t = 0; t < 16; t++) w[t] = dv.getUint32(off + t * 4);
    for (let t = 16; t < 64; t++) {
      const a = w[t - 15]!;
      const b = w[t - 2]!;
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[t] = (w[t - 16]! + s0 + w[t - 7]! + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = [h[0]!, h[1]!, h[2]!, h[3]!, h[4]!, h[5]!, h[6]!, h[7]!];
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K[t]! + w[t]!) >>> 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    h[0] = (h[0]! + a) >>> 0;
    h[1] = (h[1]! + b) >>> 0;
    h[2] = (h[2]! + c) >>> 0;
    h[3] = (h[3]! + d) >>> 0;
    h[4] = (h[4]! + e) >>> 0;
    h[5] = (h[5]! + f) >>> 0;
    h[6] = (h[6]! + g) >>> 0;
    h[7] = (h[7]! + hh) >>> 0;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(i * 4, h[i]!);
  return out;
}

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Unpadded base64url. */
export function base64url(b: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    out += B64URL[n >> 18]! + B64URL[(n >> 12) & 63]! + B64URL[(n >> 6) & 63]! + B64URL[n & 63]!;
  }
  if (i < b.length) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8);
    out += B64URL[n >> 18]! + B64URL[(n >> 12) & 63]!;
    if (i + 1 < b.length) out += B64URL[(n >> 6) & 63]!;
  }
  return out;
}

/**
 * The reconcile manifest's hash of a record's data: the first 12 bytes of
 * the SHA-256 of the data as received, in unpadded base64url.
 */
export function recordHash(raw: string): string {
  return base64url(sha256(utf8(raw)).subarray(0, 12));
}
