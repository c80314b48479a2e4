// Reference token ids from @huggingface/tokenizers (the pure-JavaScript implementation of
// tokenizer.json) for kvscope's tests.
// Usage: node reference.mjs TOKENIZER_DIR OUT_DIR TEXT_FILE...
// For the i-th text writes OUT_DIR/i.ids (special tokens added), OUT_DIR/i.plain.ids
// (add_special_tokens false) and OUT_DIR/i.decoded (the plain ids decoded).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

const [dir, out, ...texts] = process.argv.slice(2);
const tokenizer = new Tokenizer(
  JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")),
  JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")),
);
texts.forEach((file, i) => {
  const text = readFileSync(file, "utf8");
  const ids = tokenizer.encode(text).ids;
  const plain = tokenizer.encode(text, { add_special_tokens: false }).ids;
  writeFileSync(join(out, `${i}.ids`), ids.join(" ") + "\n");
  writeFileSync(join(out, `${i}.plain.ids`), plain.join(" ") + "\n");
  writeFileSync(join(out, `${i}.decoded`), plain.length ? tokenizer.decode(plain) : "");
});
