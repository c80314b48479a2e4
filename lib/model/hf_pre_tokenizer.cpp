#include "model/hf_pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/json_fields.h"
#include "model/pcre2_regex.h"

namespace kvscope {
namespace {

using json = nlohmann::json;

bool bool_option(const json& spec, const char* key, bool fallback, const std::string& label) {
  const auto it = spec.find(key);
  if (it == spec.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail(label, ": '", key, "' must be true or false");
  return it->get<bool>();
}

// Cuts every piece at the matches of a regex (or occurrences of a string): matches and the
// text between them become pieces (Isolated), or only the text between them (Removed).
class Split : public PreTokenizer {
 public:
  Split(const json& spec, const std::string& label) {
    const auto p = spec.find("pattern");
    if (p == spec.end() || !p->is_object()) fail(label, ": needs a 'pattern'");
    if (p->contains("Regex") && (*p)["Regex"].is_string()) {
      regex_ = std::make_unique<Pcre2Regex>((*p)["Regex"].get<std::string>(), label);
    } else if (p->contains("String") && (*p)["String"].is_string()) {
      literal_ = (*p)["String"].get<std::string>();
      if (literal_.empty()) fail(label, ": empty String pattern");
    } else {
      fail(label, ": pattern must be {\"Regex\": ...} or {\"String\": ...}");
    }
    const std::string behavior = json_string(spec, "behavior", "Isolated", label);
    if (behavior != "Isolated" && behavior != "Removed") {
      fail(label, ": behavior '", behavior, "' is not supported (supported: Isolated, Removed)");
    }
    keep_matches_ = behavior == "Isolated";
    if (bool_option(spec, "invert", false, label)) fail(label, ": 'invert': true is not supported");
  }

  void split(AlignedText&& piece, bool, const Emit& emit) const override {
    size_t prev = 0;
    const auto on_match = [&](size_t b, size_t e) {
      if (b > prev) emit(piece.slice(prev, b));
      if (keep_matches_) emit(piece.slice(b, e));
      prev = e;
    };
    if (regex_) {
      regex_->for_each_match(piece.text, on_match);
    } else {
      for (size_t at = piece.text.find(literal_); at != std::string::npos; at = piece.text.find(literal_, at + literal_.size())) {
        on_match(at, at + literal_.size());
      }
    }
    if (prev < piece.text.size()) emit(piece.slice(prev, piece.text.size()));
  }

 private:

  std::unique_ptr<Pcre2Regex> regex_;
  std::string literal_;
  bool keep_matches_ = true;
};

// GPT-2's byte-level pre-tokenizer: optional prefix space, optional GPT-2 word regex; the
// byte-to-character mapping itself happens in the model (which works on raw bytes).
class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(const json& spec, const std::string& label)
      : add_prefix_space_(bool_option(spec, "add_prefix_space", true, label)) {
    // trim_offsets changes only the offsets the Rust library reports, not the tokens.
    bool_option(spec, "trim_offsets", true, label);
    if (bool_option(spec, "use_regex", true, label)) {
      regex_ = std::make_unique<Pcre2Regex>(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", label);
    }
  }

  void split(AlignedText&& piece, bool, const Emit& emit) const override {
    if (add_prefix_space_ && (piece.text.empty() || piece.text[0] != ' ')) {
      piece.materialise();
      piece.starts.insert(piece.starts.begin(), piece.starts.front());
      piece.text.insert(0, " ");
    }
    if (!regex_) return emit(std::move(piece));
    size_t prev = 0;
    regex_->for_each_match(piece.text, [&](size_t b, size_t e) {
      if (b > prev) emit(piece.slice(prev, b));
      emit(piece.slice(b, e));
      prev = e;
    });
    if (prev < piece.text.size()) emit(piece.slice(prev, piece.text.size()));
  }

  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Pcre2Regex> regex_;
};

// SentencePiece-style: spaces become the replacement character (U+2581 by default), one
// is prepended per prepend_scheme, and with split each word starts at a replacement.
class Metaspace : public PreTokenizer {
 public:
  Metaspace(const json& spec, const std::string& label) {
    replacement_ = json_string(spec, "replacement", "\xE2\x96\x81", label);
    if (replacement_.empty()) fail(label, ": empty 'replacement'");
    if (spec.contains("prepend_scheme") && !spec["prepend_scheme"].is_null()) {
      scheme_ = spec["prepend_scheme"].is_string() ? spec["prepend_scheme"].get<std::string>() : "";
      if (scheme_ != "always" && scheme_ != "first" && scheme_ != "never") {
        fail(label, ": prepend_scheme ", spec["prepend_scheme"].dump(), " is not supported (always, first, never)");
      }
    } else {
      // Older files spell it add_prefix_space.
      scheme_ = bool_option(spec, "add_prefix_space", true, label) ? "always" : "never";
    }
    split_ = bool_option(spec, "split", true, label);
  }

  void split(AlignedText&& piece, bool first_section, const Emit& emit) const override {
    {
      AlignedText t;
      t.text.reserve(piece.text.size() + replacement_.size());
      t.starts.reserve(piece.text.size() + replacement_.size() + 1);
      const bool prepend = (scheme_ == "always" || (scheme_ == "first" && first_section)) &&
                           piece.text.compare(0, replacement_.size(), replacement_) != 0 && piece.text.compare(0, 1, " ") != 0;
      if (prepend) {
        t.text += replacement_;
        t.starts.insert(t.starts.end(), replacement_.size(), piece.start(0));
      }
      for (size_t i = 0; i < piece.text.size(); ++i) {
        if (piece.text[i] == ' ') {
          t.text += replacement_;
          t.starts.insert(t.starts.end(), replacement_.size(), piece.start(i));
        } else {
          t.text += piece.text[i];
          t.starts.push_back(piece.start(i));
        }
      }
      t.starts.push_back(piece.start(piece.text.size()));
      if (!split_) return emit(std::move(t));
      size_t begin = 0;
      for (size_t at = t.text.find(replacement_, 1); at != std::string::npos; at = t.text.find(replacement_, at + replacement_.size())) {
        if (at > begin) emit(t.slice(begin, at));
        begin = at;
      }
      if (begin < t.text.size()) emit(t.slice(begin, t.text.size()));
    }
  }

 private:
  std::string replacement_;
  std::string scheme_;
  bool split_ = true;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void split(AlignedText&& piece, bool first_section, const Emit& emit) const override { run(0, std::move(piece), first_section, emit); }
  bool byte_level() const override {
    for (const auto& s : steps_)
      if (s->byte_level()) return true;
    return false;
  }

 private:
  void run(size_t step, AlignedText&& piece, bool first_section, const Emit& emit) const {
    if (step == steps_.size()) return emit(std::move(piece));
    const Emit next = [&](AlignedText&& p) { run(step + 1, std::move(p), first_section, emit); };
    steps_[step]->split(std::move(piece), first_section, next);
  }

  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const json& spec, const std::string& label) {
  if (spec.is_null()) return nullptr;
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string()) fail(label, ": expected an object with a 'type'");
  const std::string type = spec["type"].get<std::string>();
  const std::string where = label + " (" + type + ")";
  if (type == "Split") return std::make_unique<Split>(spec, where);
  if (type == "ByteLevel") return std::make_unique<ByteLevel>(spec, where);
  if (type == "Metaspace") return std::make_unique<Metaspace>(spec, where);
  if (type == "Sequence") {
    const auto list = spec.find("pretokenizers");
    if (list == spec.end() || !list->is_array()) fail(where, ": needs a 'pretokenizers' list");
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list->size(); ++i) {
      auto step = parse_pre_tokenizer((*list)[i], concat(label, "[", i, "]"));
      if (!step) continue;
      // Later steps would see the mapped characters, which this implementation keeps as bytes.
      if (!steps.empty() && steps.back()->byte_level()) fail(where, ": ByteLevel must be the last pre-tokenizer of a Sequence");
      steps.push_back(std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  fail(label, ": unsupported pre_tokenizer type '", type, "' (supported: Split, ByteLevel, Metaspace, Sequence)");
}

}  // namespace kvscope
