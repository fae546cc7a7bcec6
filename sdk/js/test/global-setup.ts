// Builds the real syncpoint binary once for every test file, and cleans up
// after the run: the data dirs, and any server a failed test left running.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), "syncpoint-js-"));
  mkdirSync(join(root, "pids"));
  process.env.SYNCPOINT_TEST_ROOT = root;
  if (!process.env.SYNCPOINT_BIN) {
    const bin = join(root, "syncpoint");
    const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
    execFileSync("go", ["build", "-o", bin, "./cmd/syncpoint"], { cwd: repo, stdio: "inherit" });
    process.env.SYNCPOINT_BIN = bin;
  }
  return () => {
    for (const pid of readdirSync(join(root, "pids"))) {
      try {
        // Only a server of this run: its command line names this run's dir.
        if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(root)) process.kill(Number(pid), "SIGKILL");
      } catch {
        // already gone
      }
    }
    rmSync(root, { recursive: true, force: true });
  };
}
