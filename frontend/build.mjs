// Builds the tab into ../tb_lstm_states/static/ (deterministic: no hashes, no
// timestamps, no sourcemaps), or with --tests the unit tests into node_modules/.tests/.
import * as esbuild from "esbuild";
import { readdirSync, rmSync, mkdirSync } from "node:fs";

const common = {
  bundle: true,
  format: "esm",
  target: "es2020",
  legalComments: "none",
  logLevel: "warning",
  charset: "utf8",
};

if (process.argv.includes("--tests")) {
  const out = "node_modules/.tests";
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const entries = readdirSync("test").filter((f) => f.endsWith(".test.ts")).map((f) => "test/" + f);
  await esbuild.build({ ...common, entryPoints: entries, outdir: out, platform: "node", outExtension: { ".js": ".mjs" } });
} else {
  await esbuild.build({
    ...common,
    entryPoints: { index: "src/index.ts", grid_worker: "src/grid_worker.ts" },
    outdir: "../tb_lstm_states/static",
    platform: "browser",
    minify: true,
  });
}
