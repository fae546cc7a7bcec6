// The browser tests: `npm run test:browser`, apart from `npm test`. They
// drive Debian's Chromium (/usr/bin/chromium, or CHROMIUM) with
// playwright-core, against the real syncpoint binary (test/global-setup.ts
// builds it once; SYNCPOINT_BIN reuses one) and the SDK's built dist/.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    globalSetup: ["./test/global-setup.ts"],
    include: ["browser-test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // One browser at a time: the machine may have 2 cores.
    fileParallelism: false,
  },
});
