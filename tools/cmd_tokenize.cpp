#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "common.h"
#include "model_runtime.h"
#include "core/error.h"
#include "model/config.h"
#include "model/tokenizer.h"

namespace kvscope::tools {
namespace {

// A model directory's config.json, when it has one, bounds ids by vocab_size; a directory
// holding only tokenizer files is enough.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) fail(dir, ": not a directory");
  if (std::filesystem::is_regular_file(std::filesystem::path(dir) / "config.json", ec)) {
    return Tokenizer::load(dir, load_model_config(dir));
  }
  return Tokenizer::load(dir);
}

void write_stdout(const std::string& s) {
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size() || std::fflush(stdout) != 0) fail("stdout: write failed");
}

}  // namespace

Command register_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Text to token ids (or ids to text) with a model directory's tokenizer.json or tokenizer.model");
  static std::string dir, text_file, ids_file;
  static bool no_special = false, pieces = false, decode = false;
  cmd->add_option("DIR", dir, "directory with tokenizer.json or tokenizer.model (config.json and weights are optional)")->required();
  auto* text = cmd->add_option("--text", text_file, "UTF-8 text file to encode; prints decimal ids separated by spaces (the --ids format)");
  auto* ids = cmd->add_option("--ids", ids_file, "with --decode: token ids to turn back into text");
  auto* dec = cmd->add_flag("--decode", decode, "decode --ids FILE and print the text");
  auto* ns = cmd->add_flag("--no-special", no_special, "add no BOS/EOS (add_special_tokens=False)");
  auto* pc = cmd->add_flag("--pieces", pieces, "print one 'id<TAB>token' line per token instead");
  text->excludes(ids)->excludes(dec);
  ids->needs(dec);
  dec->needs(ids)->excludes(ns)->excludes(pc);
  return {cmd, [] {
            const auto tok = load_tokenizer(dir);
            if (decode) {
              write_stdout(tok->decode(read_token_ids_file(ids_file, tok->vocab_size())));
              return 0;
            }
            if (text_file.empty()) fail("tokenize: pass --text FILE (or --decode --ids FILE)");
            const std::string text = read_text_file(text_file);
            Encoding enc;
            try {
              enc = tok->encode(text, !no_special);
            } catch (const Error& e) {
              fail(text_file, ": ", e.what());
            }
            std::string out;
            out.reserve(enc.ids.size() * 7);
            for (size_t i = 0; i < enc.ids.size(); ++i) {
              if (pieces) {
                out += std::to_string(enc.ids[i]) + '\t' + enc.pieces[i] + '\n';
              } else {
                if (i) out += ' ';
                out += std::to_string(enc.ids[i]);
              }
            }
            if (!pieces) out += '\n';
            write_stdout(out);
            return 0;
          }};
}

}  // namespace kvscope::tools
