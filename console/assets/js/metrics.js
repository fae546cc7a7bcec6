// Reading the server's own figures from /metrics (the Prometheus text
// format) and turning two samples into rates.

// parse returns the samples: [{name, labels, value}].
export function parse(text) {
  const out = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[3]))) labels[l[1]] = l[2].replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
    }
    const value = m[4] === "+Inf" ? Infinity : m[4] === "-Inf" ? -Infinity : Number(m[4]);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

// sum adds the samples of name whose labels pass match.
export function sum(samples, name, match = () => true) {
  let s = 0;
  let found = false;
  for (const x of samples) {
    if (x.name === name && match(x.labels)) {
      s += x.value;
      found = true;
    }
  }
  return found ? s : undefined;
}

// buckets returns a histogram's cumulative buckets, [{le, count}] by le.
export function buckets(samples, name) {
  return samples
    .filter((x) => x.name === `${name}_bucket`)
    .map((x) => ({ le: x.labels.le === "+Inf" ? Infinity : Number(x.labels.le), count: x.value }))
    .sort((a, b) => a.le - b.le);
}

// quantile estimates the q-quantile of the observations between two bucket
// snapshots (before may be empty), interpolating within a bucket as
// Prometheus' histogram_quantile does. It returns undefined with no
// observations.
export function quantile(q, now, before = []) {
  const prev = new Map(before.map((b) => [b.le, b.count]));
  const delta = now.map((b) => ({ le: b.le, count: b.count - (prev.get(b.le) ?? 0) }));
  const total = delta.length ? delta[delta.length - 1].count : 0;
  if (!(total > 0)) return undefined;
  const rank = q * total;
  let lowLe = 0, lowCount = 0;
  for (const b of delta) {
    if (b.count >= rank) {
      if (b.le === Infinity) return lowLe; // beyond the last bound: say its bound
      const inBucket = b.count - lowCount;
      return inBucket > 0 ? lowLe + ((b.le - lowLe) * (rank - lowCount)) / inBucket : b.le;
    }
    lowLe = b.le;
    lowCount = b.count;
  }
  return lowLe;
}

// rate is the per-second change of a counter between two readings; a
// counter that went down (a restart) counts from zero.
export function rate(now, before, seconds) {
  if (now === undefined || before === undefined || !(seconds > 0)) return undefined;
  const d = now >= before ? now - before : now;
  return d / seconds;
}

// fmtNum shows a rate or count briefly.
export function fmtNum(n, digits = 1) {
  if (n === undefined || Number.isNaN(n)) return "–";
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(digits)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(digits)}k`;
  if (Number.isInteger(n)) return String(n);
  return n.toFixed(digits);
}

// fmtSeconds shows a duration in seconds with a fitting unit.
export function fmtSeconds(s) {
  if (s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
