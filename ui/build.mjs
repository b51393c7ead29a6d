// Builds the dashboard's assets into internal/dashboard/assets (embedded in
// the binary) and the data-shaping module for `node --test` into dist/.
import * as esbuild from "esbuild";

await esbuild.build({
  entryPoints: ["src/main.ts"], bundle: true, minify: true, format: "iife", target: "es2022",
  outfile: "../internal/dashboard/assets/app.js", legalComments: "eof", logLevel: "warning",
});
await esbuild.build({
  entryPoints: ["src/shape.ts"], bundle: false, format: "esm", target: "es2022",
  outfile: "dist/shape.mjs", logLevel: "warning",
});
