#include "model/hf_normalizer.h"

#include <nlohmann/json.hpp>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <vector>

#include "core/error.h"
#include "model/utf8.h"

namespace kvscope {
namespace {

using json = nlohmann::json;

std::string required_string(const json& spec, const char* key, const std::string& label) {
  const auto it = spec.find(key);
  if (it == spec.end() || !it->is_string()) fail(label, ": needs a string '", key, "'");
  return it->get<std::string>();
}

// The normalisation forms, through ICU. The text is cut where ICU guarantees a
// normalisation boundary, so each piece normalises independently: output bytes then map
// to the input piece they came from.
class UnicodeForm : public TextNormalizer {
 public:
  UnicodeForm(const std::string& form, const std::string& label) {
    UErrorCode err = U_ZERO_ERROR;
    if (form == "NFC") norm_ = unorm2_getNFCInstance(&err);
    else if (form == "NFD") norm_ = unorm2_getNFDInstance(&err);
    else if (form == "NFKC") norm_ = unorm2_getNFKCInstance(&err);
    else norm_ = unorm2_getNFKDInstance(&err);
    if (U_FAILURE(err)) fail(label, ": ICU has no ", form, " data (", u_errorName(err), ")");
  }

  void apply(AlignedText& t) const override {
    const std::string& s = t.text;
    size_t first_non_ascii = 0;
    while (first_non_ascii < s.size() && static_cast<unsigned char>(s[first_non_ascii]) < 0x80) ++first_non_ascii;
    if (first_non_ascii == s.size()) return;  // ASCII is invariant under every form
    std::string out;
    std::vector<int64_t> starts;
    out.reserve(s.size());
    starts.reserve(s.size() + 1);
    bool changed = false;
    std::vector<UChar> in16, out16;
    size_t i = 0;
    while (i < s.size()) {
      size_t j = i;
      next_code_point(s, j);
      while (j < s.size()) {
        size_t k = j;
        const char32_t c = next_code_point(s, k);
        if (unorm2_hasBoundaryBefore(norm_, static_cast<UChar32>(c))) break;
        j = k;
      }
      if (j - i == 1) {
        out += s[i];
        starts.push_back(t.start(i));
      } else {
        const std::string piece = normalise(s.substr(i, j - i), in16, out16);
        if (s.compare(i, j - i, piece) == 0) {
          for (size_t k = i; k < j; ++k) starts.push_back(t.start(k));
        } else {
          changed = true;
          starts.insert(starts.end(), piece.size(), t.start(i));
        }
        out += piece;
      }
      i = j;
    }
    if (!changed) return;
    starts.push_back(t.start(s.size()));
    t.text = std::move(out);
    t.starts = std::move(starts);
  }

 private:
  std::string normalise(const std::string& utf8, std::vector<UChar>& in16, std::vector<UChar>& out16) const {
    UErrorCode err = U_ZERO_ERROR;
    int32_t n16 = 0;
    in16.resize(utf8.size() + 1);
    u_strFromUTF8(in16.data(), static_cast<int32_t>(in16.size()), &n16, utf8.data(), static_cast<int32_t>(utf8.size()), &err);
    if (U_FAILURE(err)) fail("unicode normalisation: ", u_errorName(err));
    out16.resize(static_cast<size_t>(n16) * 4 + 16);  // decompositions grow text by at most a few code units each
    const int32_t m = unorm2_normalize(norm_, in16.data(), n16, out16.data(), static_cast<int32_t>(out16.size()), &err);
    if (U_FAILURE(err)) fail("unicode normalisation: ", u_errorName(err));
    std::string out(static_cast<size_t>(m) * 3 + 4, '\0');
    int32_t n8 = 0;
    u_strToUTF8(out.data(), static_cast<int32_t>(out.size()), &n8, out16.data(), m, &err);
    if (U_FAILURE(err)) fail("unicode normalisation: ", u_errorName(err));
    out.resize(static_cast<size_t>(n8));
    return out;
  }

  const UNormalizer2* norm_ = nullptr;
};

// Prepends a string to non-empty text; the added bytes map to where the text starts.
class Prepend : public TextNormalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  void apply(AlignedText& t) const override {
    if (t.text.empty()) return;
    t.materialise();
    t.starts.insert(t.starts.begin(), prefix_.size(), t.starts.front());
    t.text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

// Replaces every occurrence of a literal string, left to right.
class Replace : public TextNormalizer {
 public:
  Replace(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  void apply(AlignedText& t) const override {
    if (t.text.find(from_) == std::string::npos) return;
    std::string out;
    std::vector<int64_t> starts;
    out.reserve(t.text.size() + t.text.size() / 2);
    starts.reserve(out.capacity() + 1);
    size_t i = 0;
    while (i < t.text.size()) {
      const size_t hit = t.text.find(from_, i);
      const size_t stop = hit == std::string::npos ? t.text.size() : hit;
      for (size_t k = i; k < stop; ++k) starts.push_back(t.start(k));
      out.append(t.text, i, stop - i);
      if (hit == std::string::npos) break;
      starts.insert(starts.end(), to_.size(), t.start(hit));
      out += to_;
      i = hit + from_.size();
    }
    starts.push_back(t.start(t.text.size()));
    t.text = std::move(out);
    t.starts = std::move(starts);
  }

 private:
  std::string from_, to_;
};

class Sequence : public TextNormalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<TextNormalizer>> steps) : steps_(std::move(steps)) {}
  void apply(AlignedText& t) const override {
    for (const auto& s : steps_) s->apply(t);
  }

 private:
  std::vector<std::unique_ptr<TextNormalizer>> steps_;
};

}  // namespace

std::unique_ptr<TextNormalizer> parse_normalizer(const json& spec, const std::string& label) {
  if (spec.is_null()) return nullptr;
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string()) fail(label, ": expected an object with a 'type'");
  const std::string type = spec["type"].get<std::string>();
  const std::string where = label + " (" + type + ")";
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") return std::make_unique<UnicodeForm>(type, where);
  if (type == "Prepend") return std::make_unique<Prepend>(required_string(spec, "prepend", where));
  if (type == "Replace") {
    const auto p = spec.find("pattern");
    if (p == spec.end() || !p->is_object()) fail(where, ": needs a 'pattern'");
    if (!p->contains("String") || !(*p)["String"].is_string()) fail(where, ": only String patterns are supported (got ", p->dump(), ")");
    const std::string from = (*p)["String"].get<std::string>();
    if (from.empty()) fail(where, ": empty pattern");
    return std::make_unique<Replace>(from, required_string(spec, "content", where));
  }
  if (type == "Sequence") {
    const auto list = spec.find("normalizers");
    if (list == spec.end() || !list->is_array()) fail(where, ": needs a 'normalizers' list");
    std::vector<std::unique_ptr<TextNormalizer>> steps;
    for (size_t i = 0; i < list->size(); ++i) {
      auto step = parse_normalizer((*list)[i], concat(label, "[", i, "]"));
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  fail(label, ": unsupported normalizer type '", type, "' (supported: NFC, NFD, NFKC, NFKD, Prepend, Replace, Sequence)");
}

}  // namespace kvscope
