// The JavaScript reference's throughput on the same text, measured like
// bench_tokenizer.cpp (encode only, best of REPEATS, add_special_tokens false).
// Usage: node tokenizer_throughput.mjs TOKENIZER_DIR TEXT [REPEATS]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// The package installed (pinned) under tests/js by scripts/setup.sh.
const here = fileURLToPath(new URL(".", import.meta.url));
const { Tokenizer } = await import(pathToFileURL(join(here, "../js/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs")).href);
const [dir, file, repeats = "3"] = process.argv.slice(2);
const tokenizer = new Tokenizer(
  JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")),
  JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")),
);
const text = readFileSync(file, "utf8");
const bytes = Buffer.byteLength(text, "utf8");
let best = Infinity, tokens = 0;
for (let r = 0; r < Number(repeats); ++r) {
  const t0 = process.hrtime.bigint();
  tokens = tokenizer.encode(text, { add_special_tokens: false }).ids.length;
  best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
}
console.log(`js       ${dir.padEnd(50)} ${(bytes / 1e6).toFixed(2).padStart(8)} MB in ${best.toFixed(3).padStart(7)} s = ${(bytes / 1e6 / best).toFixed(2).padStart(8)} MB/s (${tokens} tokens)`);
