#include "model/hf_bpe.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <queue>

#include "core/error.h"
#include "model/json_fields.h"
#include "model/utf8.h"

namespace kvscope {

using json = nlohmann::json;

const std::array<std::string, 256>& byte_level_alphabet() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      append_utf8(t[b], printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++));
    }
    return t;
  }();
  return table;
}

namespace {

const char* const kMetaspace = "\xE2\x96\x81";

// The bytes a byte-level token stands for; false when it is not written in that alphabet.
bool byte_level_bytes(const std::string& token, std::string& out) {
  static const std::unordered_map<char32_t, unsigned char> inverse = [] {
    std::unordered_map<char32_t, unsigned char> m;
    for (int b = 0; b < 256; ++b) {
      size_t i = 0;
      m[next_code_point(byte_level_alphabet()[b], i)] = static_cast<unsigned char>(b);
    }
    return m;
  }();
  out.clear();
  size_t i = 0;
  while (i < token.size()) {
    const auto it = inverse.find(next_code_point(token, i));
    if (it == inverse.end()) return false;
    out += static_cast<char>(it->second);
  }
  return true;
}

}  // namespace

BpeModel BpeModel::parse(const json& model, bool byte_level, const std::string& label) {
  if (!model.is_object()) fail(label, ": 'model' must be an object");
  const std::string type = json_string(model, "type", "BPE", label);
  if (type != "BPE") fail(label, ": unsupported model type '", type, "' (supported: BPE)");
  BpeModel m;
  m.byte_level_ = byte_level;
  const auto flag = [&](const char* key) {
    const auto it = model.find(key);
    if (it == model.end() || it->is_null()) return false;
    if (!it->is_boolean()) fail(label, ": model.", key, " must be true or false");
    return it->get<bool>();
  };
  m.byte_fallback_ = flag("byte_fallback");
  m.fuse_unk_ = flag("fuse_unk");
  m.ignore_merges_ = flag("ignore_merges");
  if (const auto d = model.find("dropout"); d != model.end() && !d->is_null() && !(d->is_number() && d->get<double>() == 0.0)) {
    fail(label, ": model.dropout ", d->dump(), " is not supported (BPE dropout makes encoding random)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
      fail(label, ": model.", key, " ", it->dump(), " is not supported");
    }
  }
  const auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object() || vocab->empty()) fail(label, ": model.vocab must be a non-empty object");
  m.vocab_.reserve(vocab->size());
  for (const auto& item : vocab->items()) {
    if (!item.value().is_number_integer() || item.value().get<int64_t>() < 0 || item.value().get<int64_t>() >= (1 << 30)) {
      fail(label, ": model.vocab['", item.key(), "'] is not a valid token id: ", item.value().dump());
    }
    const auto id = static_cast<int32_t>(item.value().get<int64_t>());
    if (static_cast<size_t>(id) >= m.id_to_token_.size()) m.id_to_token_.resize(static_cast<size_t>(id) + 1);
    if (!m.id_to_token_[id].empty()) fail(label, ": model.vocab gives id ", id, " to both '", m.id_to_token_[id], "' and '", item.key(), "'");
    m.id_to_token_[id] = item.key();
    m.vocab_.emplace(item.key(), id);
  }
  std::string raw;
  for (const auto& [token, id] : m.vocab_) {
    if (!byte_level) m.raw_.emplace(token, id);
    else if (byte_level_bytes(token, raw)) m.raw_.emplace(raw, id);
  }
  m.byte_ids_.fill(-1);
  m.fallback_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    if (byte_level) m.byte_ids_[b] = m.find(byte_level_alphabet()[b]);
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    m.fallback_ids_[b] = m.find(name);
  }
  if (const auto unk = model.find("unk_token"); unk != model.end() && !unk->is_null()) {
    if (!unk->is_string()) fail(label, ": model.unk_token must be a string");
    m.unk_id_ = m.find(unk->get<std::string>());
    if (m.unk_id_ < 0) fail(label, ": model.unk_token '", unk->get<std::string>(), "' is not in the vocabulary");
  }
  const auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) fail(label, ": model.merges must be a list");
  m.merges_.reserve(merges->size() * 2);
  for (size_t r = 0; r < merges->size(); ++r) {
    const json& item = (*merges)[r];
    std::string a, b;
    if (item.is_string()) {  // the older "a b" spelling
      const std::string s = item.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) fail(label, ": merge ", r, " '", s, "' is not two tokens");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (item.is_array() && item.size() == 2 && item[0].is_string() && item[1].is_string()) {
      a = item[0].get<std::string>();
      b = item[1].get<std::string>();
    } else {
      fail(label, ": merge ", r, " is neither \"a b\" nor [\"a\", \"b\"]: ", item.dump());
    }
    const int32_t ia = m.find(a), ib = m.find(b), ir = m.find(a + b);
    if (ia < 0 || ib < 0 || ir < 0) fail(label, ": merge ", r, " ('", a, "' + '", b, "') uses a token that is not in the vocabulary");
    // A repeated pair keeps its first (best) rank.
    m.merges_.emplace(pair_key(ia, ib), Merge{static_cast<int32_t>(r), ir});
  }
  if (!byte_level) {
    m.cut_before_metaspace_ = true;
    for (const auto& [key, merge] : m.merges_) {
      const std::string& t = m.id_to_token_[static_cast<size_t>(merge.result)];
      for (size_t at = t.find(kMetaspace, 1); at != std::string::npos; at = t.find(kMetaspace, at + 1)) {
        if (at < 3 || t.compare(at - 3, 3, kMetaspace) != 0) m.cut_before_metaspace_ = false;
      }
    }
  }
  return m;
}

void BpeModel::merge(std::vector<int32_t>& sym, std::vector<uint32_t>& len) const {
  const int n = static_cast<int>(sym.size());
  if (n < 2) return;
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank;
    int pos;
    int32_t left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto consider = [&](int i) {
    if (i < 0 || next[i] < 0 || sym[i] < 0 || sym[next[i]] < 0) return;
    const auto it = merges_.find(pair_key(sym[i], sym[next[i]]));
    if (it != merges_.end()) queue.push(Candidate{it->second.rank, i, sym[i], sym[next[i]]});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    const int j = next[c.pos];
    // Stale: one side was merged away since this pair was queued.
    if (len[c.pos] == 0 || j < 0 || sym[c.pos] != c.left || sym[j] != c.right) continue;
    sym[c.pos] = merges_.at(pair_key(c.left, c.right)).result;
    len[c.pos] += len[j];
    len[j] = 0;
    sym[j] = -2;
    next[c.pos] = next[j];
    if (next[j] >= 0) prev[next[j]] = c.pos;
    consider(prev[c.pos]);
    consider(c.pos);
  }
}

void BpeModel::encode_word(const std::string& word, std::vector<int32_t>& ids, std::vector<uint32_t>& ends, Cache& cache) const {
  if (word.empty()) return;
  // Words repeat: short ones are merged once per encode call.
  if (word.size() >= 256) return encode_uncached(word, ids, ends, cache);
  BpeWordCache::Tokens hit = cache.find(word);
  if (!hit.ids) {
    const size_t first = ids.size();
    encode_uncached(word, ids, ends, cache);
    cache.insert(word, ids.data() + first, ends.data() + first, ids.size() - first);
    return;
  }
  ids.insert(ids.end(), hit.ids, hit.ids + hit.count);
  ends.insert(ends.end(), hit.ends, hit.ends + hit.count);
}

void BpeModel::encode_uncached(const std::string& word, std::vector<int32_t>& ids, std::vector<uint32_t>& ends, Cache& cache) const {
  if (ignore_merges_) {
    const auto it = raw_.find(word);
    if (it != raw_.end()) {
      ids.push_back(it->second);
      ends.push_back(static_cast<uint32_t>(word.size()));
      return;
    }
  }
  // Cut points: each U+2581 that follows another character (see cut_before_metaspace_).
  std::vector<size_t> cuts{0};
  if (cut_before_metaspace_ && word.size() > 64) {
    for (size_t at = word.find(kMetaspace, 1); at != std::string::npos; at = word.find(kMetaspace, at + 3)) {
      if (at < 3 || word.compare(at - 3, 3, kMetaspace) != 0) cuts.push_back(at);
    }
  }
  cuts.push_back(word.size());
  if (cuts.size() == 2) return encode_chunk(word, 0, word.size(), ids, ends);
  std::string chunk;
  for (size_t c = 0; c + 1 < cuts.size(); ++c) {
    chunk.assign(word, cuts[c], cuts[c + 1] - cuts[c]);
    const size_t first = ends.size();
    encode_word(chunk, ids, ends, cache);
    for (size_t k = first; k < ends.size(); ++k) ends[k] += static_cast<uint32_t>(cuts[c]);
  }
}

void BpeModel::encode_chunk(const std::string& word, size_t begin, size_t stop, std::vector<int32_t>& ids, std::vector<uint32_t>& ends) const {
  std::vector<int32_t> sym;
  std::vector<uint32_t> len;
  sym.reserve(stop - begin);
  len.reserve(stop - begin);
  const auto push_unknown = [&](size_t at, size_t n) {
    if (byte_fallback_) {
      bool all = true;
      for (size_t k = 0; k < n; ++k) all = all && fallback_ids_[static_cast<unsigned char>(word[at + k])] >= 0;
      if (all) {
        for (size_t k = 0; k < n; ++k) {
          // Byte tokens never merge (no merge names them): stored as -1 - id, final.
          sym.push_back(-1 - fallback_ids_[static_cast<unsigned char>(word[at + k])]);
          len.push_back(1);
        }
        return;
      }
    }
    if (unk_id_ < 0) {
      size_t i = at;
      fail("text has the character U+", std::hex, static_cast<uint32_t>(next_code_point(word, i)),
           " that the tokenizer cannot represent (no token, no byte fallback, no unk_token)");
    }
    if (fuse_unk_ && !sym.empty() && sym.back() == -1 - unk_id_) {
      len.back() += static_cast<uint32_t>(n);
      return;
    }
    sym.push_back(-1 - unk_id_);
    len.push_back(static_cast<uint32_t>(n));
  };
  if (byte_level_) {
    for (size_t i = begin; i < stop; ++i) {
      const int32_t id = byte_ids_[static_cast<unsigned char>(word[i])];
      if (id >= 0) {
        sym.push_back(id);
        len.push_back(1);
      } else {
        push_unknown(i, 1);
      }
    }
  } else {
    std::string ch;
    for (size_t i = begin; i < stop;) {
      const size_t n = std::min<size_t>(utf8_length(static_cast<unsigned char>(word[i])), stop - i);
      ch.assign(word, i, n);
      const auto it = raw_.find(ch);
      if (it != raw_.end()) {
        sym.push_back(it->second);
        len.push_back(static_cast<uint32_t>(n));
      } else {
        push_unknown(i, n);
      }
      i += n;
    }
  }
  merge(sym, len);
  uint32_t end = static_cast<uint32_t>(begin);
  for (size_t i = 0; i < sym.size(); ++i) {
    if (len[i] == 0) continue;
    end += len[i];
    ids.push_back(sym[i] >= 0 ? sym[i] : -1 - sym[i]);
    ends.push_back(end);
  }
}

}  // namespace kvscope
