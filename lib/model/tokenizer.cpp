#include "model/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "io/input_file.h"
#include "model/config.h"
#include "model/hf_tokenizer.h"
#include "model/sentencepiece_model.h"

namespace kvscope {

struct Tokenizer::Impl {
  std::optional<SentencePieceModel> sp;
  std::optional<HfTokenizer> hf;
};

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::filesystem::path& model_dir, const ModelConfig& config) {
  return load(model_dir, &config);
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::filesystem::path& model_dir) { return load(model_dir, nullptr); }

std::unique_ptr<Tokenizer> Tokenizer::load(const std::filesystem::path& model_dir, const ModelConfig* config) {
  const auto json_path = model_dir / "tokenizer.json";
  const auto sp_path = model_dir / "tokenizer.model";
  const auto tc_path = model_dir / "tokenizer_config.json";
  std::error_code ec;
  const bool has_tc = std::filesystem::is_regular_file(tc_path, ec);
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  tok->impl_ = std::make_unique<Impl>();
  if (std::filesystem::is_regular_file(json_path, ec)) {
    tok->impl_->hf.emplace(HfTokenizer::parse(read_text_file(json_path), has_tc ? read_text_file(tc_path) : "", json_path.string()));
    const HfTokenizer& hf = *tok->impl_->hf;
    if (config && hf.size() > config->vocab_size) {
      fail(json_path.string(), ": tokenizer has ids up to ", hf.size() - 1, " but the model's vocab_size is ", config->vocab_size);
    }
    tok->add_bos_ = hf.template_adds_tokens();
    tok->description_ = concat("tokenizer.json ", json_path.string(), ": ", hf.summary(), ", ",
                               tok->add_bos_ ? "template adds special tokens" : "no special tokens added");
    return tok;
  }
  if (!std::filesystem::is_regular_file(sp_path, ec)) {
    fail(model_dir.string(), ": no tokenizer.json or tokenizer.model (pass pre-tokenized input with --ids FILE instead)");
  }
  tok->impl_->sp.emplace(SentencePieceModel::parse(read_text_file(sp_path), sp_path.string()));
  const SentencePieceModel& sp = *tok->impl_->sp;
  if (config && sp.size() > config->vocab_size) {
    fail(sp_path.string(), ": tokenizer has ", sp.size(), " pieces but the model's vocab_size is ", config->vocab_size);
  }
  tok->bos_id_ = config && config->bos_token_id >= 0 ? config->bos_token_id : sp.bos_id();
  tok->add_bos_ = tok->bos_id_ >= 0;
  if (has_tc) {
    auto doc = nlohmann::json::parse(read_text_file(tc_path), nullptr, false);
    if (!doc.is_discarded() && doc.is_object() && doc.contains("add_bos_token") && doc["add_bos_token"].is_boolean()) {
      tok->add_bos_ = tok->add_bos_ && doc["add_bos_token"].get<bool>();
    }
  }
  tok->description_ = concat("sentencepiece ", sp_path.string(), " (", sp.size(), " pieces, ",
                             tok->add_bos_ ? "BOS added" : "no BOS", ")");
  return tok;
}

Encoding Tokenizer::encode(const std::string& text, bool add_special) const {
  Encoding out;
  if (impl_->hf) {
    const std::vector<HfToken> tokens = impl_->hf->encode(text, add_special);
    out.ids.reserve(tokens.size());
    out.pieces.reserve(tokens.size());
    out.byte_spans.reserve(tokens.size());
    for (const HfToken& t : tokens) {
      out.ids.push_back(t.id);
      out.pieces.push_back(impl_->hf->token(t.id));
      out.byte_spans.emplace_back(t.begin, t.end);
    }
    return out;
  }
  if (add_bos_ && add_special) {
    out.ids.push_back(bos_id_);
    out.pieces.push_back(piece(bos_id_));
    out.byte_spans.emplace_back(-1, -1);
  }
  for (const EncodedPiece& p : impl_->sp->encode(text)) {
    out.ids.push_back(p.id);
    out.pieces.push_back(impl_->sp->piece(p.id));
    out.byte_spans.emplace_back(p.begin, p.end);
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  return impl_->hf ? impl_->hf->decode(ids) : impl_->sp->decode(ids);
}

std::string Tokenizer::piece(int64_t id) const {
  if (impl_->hf) return impl_->hf->token(id);
  if (id < 0 || id >= impl_->sp->size()) return "";
  return impl_->sp->piece(static_cast<int>(id));
}

int64_t Tokenizer::vocab_size() const { return impl_->hf ? impl_->hf->size() : impl_->sp->size(); }

std::string read_text_file(const std::filesystem::path& path) { return read_input_file(path); }

std::vector<int64_t> read_token_ids_file(const std::filesystem::path& path, int64_t vocab_size) {
  const std::string text = read_text_file(path);
  std::vector<int64_t> ids;
  size_t i = 0;
  int line = 1;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\n') { ++line; ++i; continue; }
    if (std::isspace(static_cast<unsigned char>(c)) || c == ',') { ++i; continue; }
    if (c == '#') { while (i < text.size() && text[i] != '\n') ++i; continue; }
    size_t j = i;
    while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
    const bool terminated = j == text.size() || std::isspace(static_cast<unsigned char>(text[j])) || text[j] == ',' || text[j] == '#';
    // A NUL would cut the message short when printed: name it instead of quoting it.
    if (text[j < text.size() ? j : i] == '\0') fail(path.string(), ":", line, ": a NUL byte; expected decimal token ids (is this a binary file?)");
    if (j == i || !terminated || j - i > 12) {
      size_t e = i;
      while (e < text.size() && !std::isspace(static_cast<unsigned char>(text[e])) && text[e] != ',') ++e;
      fail(path.string(), ":", line, ": '", text.substr(i, std::min<size_t>(e - i, 40)), "' is not a token id (expected non-negative integers)");
    }
    const int64_t id = std::stoll(text.substr(i, j - i));
    if (id >= vocab_size) fail(path.string(), ":", line, ": token id ", id, " is out of vocabulary (vocab_size ", vocab_size, ")");
    ids.push_back(id);
    i = j;
  }
  if (ids.empty()) fail(path.string(), ": no token ids found (empty input)");
  return ids;
}

}  // namespace kvscope
