#include "model/hf_tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "model/json_fields.h"
#include "model/hf_bpe.h"
#include "model/hf_decoder.h"
#include "model/hf_normalizer.h"
#include "model/hf_pre_tokenizer.h"
#include "model/utf8.h"

namespace kvscope {

using json = nlohmann::json;

namespace {

struct AddedToken {
  std::string content;
  int32_t id;
  bool lstrip, rstrip, normalized, special;
};

// Added tokens are found leftmost-longest, as the reference implementations do. A trie
// over bytes; a table of possible first bytes skips most positions without a lookup.
class AddedTokenMatcher {
 public:
  void add(const std::string& s, int index) {
    if (s.empty()) return;
    first_[static_cast<unsigned char>(s[0])] = true;
    int node = 0;
    for (const char c : s) {
      const auto key = std::make_pair(node, static_cast<unsigned char>(c));
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        terminal_.push_back(-1);
        it = edges_.emplace(key, static_cast<int>(terminal_.size()) - 1).first;
      }
      node = it->second;
    }
    terminal_[node] = index;
  }
  bool empty() const { return terminal_.size() <= 1; }
  // Longest match starting at `i`: {length, index} or {0, -1}.
  std::pair<size_t, int> match_at(const std::string& s, size_t i) const {
    if (!first_[static_cast<unsigned char>(s[i])]) return {0, -1};
    std::pair<size_t, int> best{0, -1};
    int node = 0;
    for (size_t j = i; j < s.size(); ++j) {
      const auto it = edges_.find({node, static_cast<unsigned char>(s[j])});
      if (it == edges_.end()) break;
      node = it->second;
      if (terminal_[node] >= 0) best = {j + 1 - i, terminal_[node]};
    }
    return best;
  }

 private:
  std::map<std::pair<int, unsigned char>, int> edges_;
  std::vector<int> terminal_{-1};
  bool first_[256] = {};
};

struct Section {
  size_t begin, end;
  int added;  // index into added tokens, or -1
};

std::vector<Section> split_on(const AddedTokenMatcher& matcher, const std::string& s) {
  std::vector<Section> out;
  size_t start = 0, i = 0;
  while (i < s.size()) {
    const auto [n, index] = matcher.empty() ? std::pair<size_t, int>{0, -1} : matcher.match_at(s, i);
    if (n == 0) { ++i; continue; }
    if (i > start) out.push_back({start, i, -1});
    out.push_back({i, i + n, index});
    i += n;
    start = i;
  }
  if (start < s.size()) out.push_back({start, s.size(), -1});
  return out;
}

bool is_strippable(char32_t c) { return is_unicode_whitespace(c) || c == 0xFEFF; }

// lstrip / rstrip: whitespace beside an added token belongs to it and leaves its neighbour.
void strip_beside_added(std::vector<Section>& sections, const std::string& s, const std::vector<AddedToken>& added) {
  for (size_t k = 0; k < sections.size(); ++k) {
    if (sections[k].added < 0) continue;
    const AddedToken& a = added[static_cast<size_t>(sections[k].added)];
    if (a.lstrip && k > 0 && sections[k - 1].added < 0) {
      Section& left = sections[k - 1];
      // Walk back over whole characters.
      while (left.end > left.begin) {
        size_t b = left.end - 1;
        while (b > left.begin && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
        size_t i = b;
        if (!is_strippable(next_code_point(s, i))) break;
        left.end = b;
      }
    }
    if (a.rstrip && k + 1 < sections.size() && sections[k + 1].added < 0) {
      Section& right = sections[k + 1];
      while (right.begin < right.end) {
        size_t i = right.begin;
        if (!is_strippable(next_code_point(s, i))) break;
        right.begin = i;
      }
    }
  }
}

}  // namespace

struct HfTokenizer::Impl {
  std::unique_ptr<TextNormalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<TokenDecoder> decoder;
  BpeModel model;
  std::vector<AddedToken> added;
  std::vector<int32_t> added_by_id;  // index into `added` per id, -1 for model tokens
  std::unordered_set<std::string> added_contents;
  AddedTokenMatcher raw_matcher, normalized_matcher;
  std::vector<int32_t> prefix, suffix;  // the template around sequence A
  bool clean_up_spaces = true;
  int64_t size = 0;
  std::string description;

  using WordCache = BpeModel::Cache;
  void encode_section(const std::string& text, const Section& sec, bool first_section, WordCache& cache, std::vector<HfToken>& out) const;
};

HfTokenizer::HfTokenizer() = default;
HfTokenizer::HfTokenizer(HfTokenizer&&) noexcept = default;
HfTokenizer& HfTokenizer::operator=(HfTokenizer&&) noexcept = default;
HfTokenizer::~HfTokenizer() = default;

namespace {

// TemplateProcessing's single-sequence template as the ids before and after sequence A.
void parse_template(const json& pp, const std::string& label, std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  const auto single = pp.find("single");
  if (single == pp.end() || !single->is_array()) fail(label, ": TemplateProcessing needs a 'single' list");
  const json specials = pp.contains("special_tokens") ? pp["special_tokens"] : json::object();
  if (!specials.is_object()) fail(label, ": 'special_tokens' must be an object");
  bool seen_a = false;
  for (const json& item : *single) {
    if (item.contains("Sequence")) {
      if (json_string(item["Sequence"], "id", "", label) != "A" || seen_a) fail(label, ": the single template must hold sequence A once");
      seen_a = true;
    } else if (item.contains("SpecialToken")) {
      const std::string name = json_string(item["SpecialToken"], "id", "", label);
      const auto it = specials.find(name);
      if (it == specials.end() || !it->contains("ids") || !(*it)["ids"].is_array()) {
        fail(label, ": template token '", name, "' is not in special_tokens");
      }
      for (const json& id : (*it)["ids"]) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 30)) fail(label, ": template token '", name, "' has a bad id");
        (seen_a ? suffix : prefix).push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
    } else {
      fail(label, ": template item ", item.dump(), " is neither SpecialToken nor Sequence");
    }
  }
  if (!seen_a) fail(label, ": the single template has no sequence A");
}

void parse_post_processor(const json& pp, const std::string& label, std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  if (pp.is_null()) return;
  const std::string type = json_string(pp, "type", "", label);
  if (type == "ByteLevel") return;  // only trims offsets; ids are unchanged
  if (type == "TemplateProcessing") return parse_template(pp, label + " (TemplateProcessing)", prefix, suffix);
  if (type == "Sequence") {
    const auto list = pp.find("processors");
    if (list == pp.end() || !list->is_array()) fail(label, " (Sequence): needs a 'processors' list");
    for (size_t i = 0; i < list->size(); ++i) parse_post_processor((*list)[i], concat(label, "[", i, "]"), prefix, suffix);
    return;
  }
  fail(label, ": unsupported post_processor type '", type, "' (supported: TemplateProcessing, ByteLevel, Sequence)");
}

}  // namespace

HfTokenizer HfTokenizer::parse(const std::string& json_text, const std::string& config_json, const std::string& label) {
  // Fields are type-checked where they are read; anything the JSON library still objects to
  // is reported the same way, as one line naming the file.
  try {
    return parse_checked(json_text, config_json, label);
  } catch (const json::exception& e) {
    fail(label, ": unexpected structure (", e.what(), ")");
  }
}

HfTokenizer HfTokenizer::parse_checked(const std::string& json_text, const std::string& config_json, const std::string& label) {
  const json doc = json::parse(json_text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) fail(label, ": not a JSON object");
  for (const char* key : {"truncation", "padding"}) {
    if (doc.contains(key) && !doc[key].is_null()) fail(label, ": '", key, "' is set; kvscope does not truncate or pad");
  }
  if (!doc.contains("model")) fail(label, ": no 'model'");
  HfTokenizer tok;
  tok.impl_ = std::make_unique<Impl>();
  Impl& m = *tok.impl_;
  m.normalizer = parse_normalizer(doc.value("normalizer", json()), label + ": normalizer");
  m.pre_tokenizer = parse_pre_tokenizer(doc.value("pre_tokenizer", json()), label + ": pre_tokenizer");
  m.decoder = parse_decoder(doc.value("decoder", json()), label + ": decoder");
  m.model = BpeModel::parse(doc["model"], m.pre_tokenizer && m.pre_tokenizer->byte_level(), label + ": model");
  m.size = m.model.size();
  const json added = doc.value("added_tokens", json::array());
  if (!added.is_array()) fail(label, ": 'added_tokens' must be a list");
  for (const json& a : added) {
    const auto flag = [&](const char* key, bool fallback) {
      const auto it = a.find(key);
      if (it == a.end() || it->is_null()) return fallback;
      if (!it->is_boolean()) fail(label, ": added token ", a.dump(), ": '", key, "' must be true or false");
      return it->get<bool>();
    };
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") || !a["content"].is_string()) {
      fail(label, ": added token ", a.dump(), " needs an integer 'id' and a string 'content'");
    }
    const int64_t id = a["id"].get<int64_t>();
    if (id < 0 || id >= (1 << 30)) fail(label, ": added token id ", id, " is out of range");
    AddedToken t{a["content"].get<std::string>(), static_cast<int32_t>(id), flag("lstrip", false), flag("rstrip", false), false,
                 flag("special", false)};
    t.normalized = flag("normalized", !t.special);
    if (t.content.empty()) fail(label, ": added token ", id, " has empty content");
    if (flag("single_word", false)) fail(label, ": added token '", t.content, "' sets single_word, which kvscope does not implement");
    if (const int32_t vocab_id = m.model.find(t.content); vocab_id >= 0 && vocab_id != t.id) {
      fail(label, ": added token '", t.content, "' has id ", t.id, " but the vocabulary gives it ", vocab_id);
    }
    const size_t index = m.added.size();
    m.added.push_back(t);
    if (static_cast<size_t>(t.id) >= m.added_by_id.size()) m.added_by_id.resize(static_cast<size_t>(t.id) + 1, -1);
    m.added_by_id[static_cast<size_t>(t.id)] = static_cast<int32_t>(index);
    m.added_contents.insert(t.content);
    m.size = std::max<int64_t>(m.size, t.id + 1);
    if (t.normalized && m.normalizer) {
      AlignedText n{t.content, {}, 0};
      m.normalizer->apply(n);
      m.normalized_matcher.add(n.text, static_cast<int>(index));
    } else {
      m.raw_matcher.add(t.content, static_cast<int>(index));
    }
  }
  parse_post_processor(doc.value("post_processor", json()), label + ": post_processor", m.prefix, m.suffix);
  for (const std::vector<int32_t>* ids : {&m.prefix, &m.suffix}) {
    for (const int32_t id : *ids)
      if (id >= m.size) fail(label, ": post_processor adds token id ", id, ", which no token has");
  }
  if (!config_json.empty()) {
    const std::string config_label = (std::filesystem::path(label).parent_path() / "tokenizer_config.json").string();
    const json cfg = json::parse(config_json, nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object()) fail(config_label, ": not a JSON object");
    if (cfg.contains("clean_up_tokenization_spaces") && !cfg["clean_up_tokenization_spaces"].is_null()) {
      if (!cfg["clean_up_tokenization_spaces"].is_boolean()) fail(config_label, ": clean_up_tokenization_spaces must be true or false");
      m.clean_up_spaces = cfg["clean_up_tokenization_spaces"].get<bool>();
    }
    for (const char* key : {"remove_space", "do_lowercase_and_remove_accent"}) {
      if (json_bool(cfg, key, false, config_label)) fail(config_label, ": '", key, "' is not supported");
    }
    // The template decides BOS and EOS; a config that says otherwise is contradictory.
    const auto check = [&](const char* key, const std::vector<int32_t>& side, const char* where) {
      if (!cfg.contains(key) || !cfg[key].is_boolean()) return;
      const bool says = cfg[key].get<bool>();
      if (says != !side.empty()) {
        fail(config_label, ": ", key, " is ", says ? "true" : "false", " but tokenizer.json's post_processor ",
             side.empty() ? "adds no token " : "adds a token ", where, " the text");
      }
    };
    check("add_bos_token", m.prefix, "before");
    check("add_eos_token", m.suffix, "after");
  }
  m.description = concat("BPE (", m.model.byte_level() ? "byte-level" : m.model.byte_fallback() ? "byte fallback" : "characters", "), ",
                         m.size, " tokens, ", m.model.merge_count(), " merges, ", m.added.size(), " added");
  return tok;
}

void HfTokenizer::Impl::encode_section(const std::string& text, const Section& sec, bool first_section, WordCache& cache,
                                       std::vector<HfToken>& out) const {
  AlignedText seg{text.substr(sec.begin, sec.end - sec.begin), {}, static_cast<int64_t>(sec.begin)};
  if (normalizer) normalizer->apply(seg);
  if (seg.text.empty()) return;
  std::vector<int32_t> ids;
  std::vector<uint32_t> ends;
  for (const Section& sub : split_on(normalized_matcher, seg.text)) {
    if (sub.added >= 0) {
      out.push_back({added[static_cast<size_t>(sub.added)].id, seg.start(sub.begin), seg.start(sub.end)});
      continue;
    }
    const auto encode_piece = [&](AlignedText&& piece) {
      if (piece.text.empty()) return;
      ids.clear();
      ends.clear();
      model.encode_word(piece.text, ids, ends, cache);
      uint32_t begin = 0;
      for (size_t k = 0; k < ids.size(); ++k) {
        out.push_back({ids[k], piece.start(begin), piece.start(ends[k])});
        begin = ends[k];
      }
    };
    if (pre_tokenizer) pre_tokenizer->split(seg.slice(sub.begin, sub.end), first_section, encode_piece);
    else encode_piece(seg.slice(sub.begin, sub.end));
  }
}

std::vector<HfToken> HfTokenizer::encode(const std::string& text, bool add_special) const {
  if (const int64_t bad = first_invalid_utf8(text); bad >= 0) fail("text is not valid UTF-8 (byte ", bad, ")");
  const Impl& m = *impl_;
  std::vector<HfToken> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special)
    for (const int32_t id : m.prefix) out.push_back({id, -1, -1});
  Impl::WordCache cache;
  std::vector<Section> sections = split_on(m.raw_matcher, text);
  strip_beside_added(sections, text, m.added);
  for (size_t k = 0; k < sections.size(); ++k) {
    const Section& sec = sections[k];
    if (sec.added >= 0) {
      out.push_back({m.added[static_cast<size_t>(sec.added)].id, static_cast<int64_t>(sec.begin), static_cast<int64_t>(sec.end)});
    } else if (sec.end > sec.begin) {
      m.encode_section(text, sec, k == 0, cache, out);
    }
  }
  if (add_special)
    for (const int32_t id : m.suffix) out.push_back({id, -1, -1});
  return out;
}

const std::string& HfTokenizer::token(int64_t id) const {
  static const std::string none;
  if (id < 0) return none;
  if (id < static_cast<int64_t>(impl_->added_by_id.size()) && impl_->added_by_id[static_cast<size_t>(id)] >= 0) {
    return impl_->added[static_cast<size_t>(impl_->added_by_id[static_cast<size_t>(id)])].content;
  }
  if (id >= impl_->model.size()) return none;
  return impl_->model.token(id);
}

std::string HfTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int64_t id : ids) {
    if (id < 0 || id >= impl_->size || token(id).empty()) fail("token id ", id, " is not in the tokenizer");
    tokens.push_back(token(id));
  }
  std::string text;
  if (impl_->decoder) {
    impl_->decoder->apply(tokens, impl_->added_contents);
    for (const std::string& t : tokens) text += t;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
  }
  if (impl_->clean_up_spaces) {
    // transformers' clean_up_tokenization: spaces before punctuation and English clitics.
    static const std::pair<const char*, const char*> rules[] = {{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
                                                                {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : rules) {
      const std::string f = from, t = to;
      std::string out;
      size_t i = 0;
      for (size_t at = text.find(f); at != std::string::npos; at = text.find(f, i)) {
        out.append(text, i, at - i);
        out += t;
        i = at + f.size();
      }
      out.append(text, i, std::string::npos);
      text = std::move(out);
    }
  }
  return text;
}

int64_t HfTokenizer::size() const { return impl_->size; }
bool HfTokenizer::template_adds_tokens() const { return !impl_->prefix.empty() || !impl_->suffix.empty(); }
std::string HfTokenizer::summary() const { return impl_->description; }

}  // namespace kvscope
