#include "model/hf_decoder.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <string>
#include <unordered_map>

#include "core/error.h"
#include "model/json_fields.h"
#include "model/hf_bpe.h"
#include "model/utf8.h"

namespace kvscope {
namespace {

using json = nlohmann::json;

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

// Maps GPT-2 alphabet characters back to bytes; runs of ordinary tokens are decoded as one
// UTF-8 string (invalid sequences become U+FFFD), added tokens pass through as written.
class ByteLevelDecoder : public TokenDecoder {
 public:
  ByteLevelDecoder() {
    for (int b = 0; b < 256; ++b) {
      size_t i = 0;
      inverse_[next_code_point(byte_level_alphabet()[b], i)] = static_cast<char>(b);
    }
  }
  void apply(std::vector<std::string>& tokens, const std::unordered_set<std::string>& added) const override {
    std::vector<std::string> out;
    std::string bytes;
    bool pending = false;
    const auto flush = [&] {
      if (pending) out.push_back(utf8_lossy(bytes));
      bytes.clear();
      pending = false;
    };
    for (const std::string& t : tokens) {
      if (added.count(t)) {
        flush();
        out.push_back(t);
        continue;
      }
      pending = true;
      size_t i = 0;
      while (i < t.size()) {
        const size_t at = i;
        const auto it = inverse_.find(next_code_point(t, i));
        if (it != inverse_.end()) bytes += it->second;
        else bytes.append(t, at, i - at);  // not in the alphabet: kept as written
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  std::unordered_map<char32_t, char> inverse_;
};

class MetaspaceDecoder : public TokenDecoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first) : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void apply(std::vector<std::string>& tokens, const std::unordered_set<std::string>&) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      replace_all(tokens[i], replacement_, " ");
      if (i == 0 && strip_first_ && !tokens[i].empty() && tokens[i][0] == ' ') tokens[i].erase(0, 1);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ReplaceDecoder : public TokenDecoder {
 public:
  ReplaceDecoder(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  void apply(std::vector<std::string>& tokens, const std::unordered_set<std::string>&) const override {
    for (std::string& t : tokens) replace_all(t, from_, to_);
  }

 private:
  std::string from_, to_;
};

// Runs of <0xXX> tokens become the UTF-8 text they spell (invalid bytes become U+FFFD).
class ByteFallbackDecoder : public TokenDecoder {
 public:
  void apply(std::vector<std::string>& tokens, const std::unordered_set<std::string>&) const override {
    std::vector<std::string> out;
    std::string bytes;
    for (const std::string& t : tokens) {
      int value = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
          std::isxdigit(static_cast<unsigned char>(t[4]))) {
        value = std::stoi(t.substr(3, 2), nullptr, 16);
      }
      if (value >= 0) {
        bytes += static_cast<char>(value);
        continue;
      }
      if (!bytes.empty()) out.push_back(utf8_lossy(bytes));
      bytes.clear();
      out.push_back(t);
    }
    if (!bytes.empty()) out.push_back(utf8_lossy(bytes));
    tokens = std::move(out);
  }
};

class FuseDecoder : public TokenDecoder {
 public:
  void apply(std::vector<std::string>& tokens, const std::unordered_set<std::string>&) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, all);
  }
};

// Removes up to `start` leading and `stop` trailing copies of one character from each token.
class StripDecoder : public TokenDecoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void apply(std::vector<std::string>& tokens, const std::unordered_set<std::string>&) const override {
    const size_t n = content_.size();
    for (std::string& t : tokens) {
      size_t b = 0, e = t.size();
      for (size_t k = 0; k < start_ && b + n <= e && t.compare(b, n, content_) == 0; ++k) b += n;
      for (size_t k = 0; k < stop_ && e >= b + n && t.compare(e - n, n, content_) == 0; ++k) e -= n;
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class SequenceDecoder : public TokenDecoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<TokenDecoder>> steps) : steps_(std::move(steps)) {}
  void apply(std::vector<std::string>& tokens, const std::unordered_set<std::string>& added) const override {
    for (const auto& s : steps_) s->apply(tokens, added);
  }

 private:
  std::vector<std::unique_ptr<TokenDecoder>> steps_;
};

std::string string_of(const json& spec, const char* key, const std::string& fallback, const std::string& label) {
  const auto it = spec.find(key);
  if (it == spec.end() || it->is_null()) return fallback;
  if (!it->is_string()) fail(label, ": '", key, "' must be a string");
  return it->get<std::string>();
}

size_t count_of(const json& spec, const char* key, const std::string& label) {
  const auto it = spec.find(key);
  if (it == spec.end() || it->is_null()) return 0;
  if (!it->is_number_unsigned() || it->get<uint64_t>() > 1024) fail(label, ": '", key, "' must be a small non-negative integer");
  return static_cast<size_t>(it->get<uint64_t>());
}

}  // namespace

std::unique_ptr<TokenDecoder> parse_decoder(const json& spec, const std::string& label) {
  if (spec.is_null()) return nullptr;
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string()) fail(label, ": expected an object with a 'type'");
  const std::string type = spec["type"].get<std::string>();
  const std::string where = label + " (" + type + ")";
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    std::string scheme = string_of(spec, "prepend_scheme", "", where);
    if (scheme.empty()) scheme = json_bool(spec, "add_prefix_space", true, where) ? "always" : "never";
    return std::make_unique<MetaspaceDecoder>(string_of(spec, "replacement", "\xE2\x96\x81", where), scheme != "never");
  }
  if (type == "Replace") {
    const auto p = spec.find("pattern");
    if (p == spec.end() || !p->is_object() || !p->contains("String") || !(*p)["String"].is_string()) {
      fail(where, ": only String patterns are supported");
    }
    return std::make_unique<ReplaceDecoder>((*p)["String"].get<std::string>(), string_of(spec, "content", "", where));
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const std::string content = string_of(spec, "content", " ", where);
    size_t i = 0;
    if (content.empty() || (next_code_point(content, i), i != content.size())) fail(where, ": 'content' must be one character");
    return std::make_unique<StripDecoder>(content, count_of(spec, "start", where), count_of(spec, "stop", where));
  }
  if (type == "Sequence") {
    const auto list = spec.find("decoders");
    if (list == spec.end() || !list->is_array()) fail(where, ": needs a 'decoders' list");
    std::vector<std::unique_ptr<TokenDecoder>> steps;
    for (size_t i = 0; i < list->size(); ++i) {
      auto step = parse_decoder((*list)[i], concat(label, "[", i, "]"));
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  fail(label, ": unsupported decoder type '", type, "' (supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)");
}

}  // namespace kvscope
