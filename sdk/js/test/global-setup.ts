// Builds the real syncpoint binary once for every test file.
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export default function setup(): void {
  if (process.env.SYNCPOINT_BIN) return;
  const dir = mkdtempSync(join(tmpdir(), "syncpoint-js-"));
  const bin = join(dir, "syncpoint");
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
  execFileSync("go", ["build", "-o", bin, "./cmd/syncpoint"], { cwd: root, stdio: "inherit" });
  process.env.SYNCPOINT_BIN = bin;
}
