#include "model/sentencepiece_model.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <queue>

#include "core/error.h"

namespace kvscope {
namespace {

const std::string kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's visible space

// Minimal protobuf wire-format cursor: only what ModelProto uses.
class Wire {
 public:
  Wire(const char* p, size_t n, const std::string& label) : p_(p), end_(p + n), label_(label) {}
  bool done() const { return p_ >= end_; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) fail(label_, ": truncated tokenizer model (varint)");
      const uint8_t b = static_cast<uint8_t>(*p_++);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail(label_, ": malformed tokenizer model (varint too long)");
  }
  std::string bytes() {
    const uint64_t n = varint();
    if (n > static_cast<uint64_t>(end_ - p_)) fail(label_, ": truncated tokenizer model (field length ", n, ")");
    std::string s(p_, p_ + n);
    p_ += n;
    return s;
  }
  uint32_t fixed32() {
    if (end_ - p_ < 4) fail(label_, ": truncated tokenizer model (fixed32)");
    uint32_t v;
    std::memcpy(&v, p_, 4);
    p_ += 4;
    return v;
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case 0: varint(); break;
      case 1: if (end_ - p_ < 8) fail(label_, ": truncated tokenizer model"); p_ += 8; break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: fail(label_, ": malformed tokenizer model (wire type ", wire_type, ")");
    }
  }

 private:
  const char* p_;
  const char* end_;
  const std::string& label_;
};

size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xe) return 3;
  if ((lead >> 3) == 0x1e) return 4;
  return 1;  // invalid lead byte: treat as one byte, as SentencePiece does
}

// Length of the valid UTF-8 sequence at s[0..n), or 0 if it is malformed (bad
// continuation, overlong form, surrogate or beyond U+10FFFF).
size_t valid_utf8_length(const unsigned char* s, size_t n) {
  const size_t len = utf8_length(s[0]);
  if (s[0] < 0x80) return 1;
  if (s[0] < 0xc2 || s[0] > 0xf4 || len > n) return 0;
  for (size_t k = 1; k < len; ++k) if ((s[k] & 0xc0) != 0x80) return 0;
  if (len == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f))) return 0;
  if (len == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))) return 0;
  return len;
}

// "<0xAB>" -> 0xAB; -1 for anything else (a hostile model may name byte pieces freely).
int byte_piece_value(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = piece[i];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

const std::string kReplacement = "\xef\xbf\xbd";  // U+FFFD, what libsentencepiece puts for malformed bytes

}  // namespace

SentencePieceModel SentencePieceModel::parse(const std::string& data, const std::string& label) {
  SentencePieceModel m;
  int model_type = 1;  // UNIGRAM is the proto default
  std::string normalizer_name, charsmap;
  Wire top(data.data(), data.size(), label);
  while (!top.done()) {
    const uint64_t key = top.varint();
    const int field = static_cast<int>(key >> 3), wt = static_cast<int>(key & 7);
    if (wt != 2) { top.skip(wt); continue; }
    const std::string sub = top.bytes();
    Wire w(sub.data(), sub.size(), label);
    if (field == 1) {  // SentencePiece
      SentencePieceEntry e;
      while (!w.done()) {
        const uint64_t k = w.varint();
        const int f = static_cast<int>(k >> 3), t = static_cast<int>(k & 7);
        if (f == 1 && t == 2) e.piece = w.bytes();
        else if (f == 2 && t == 5) { const uint32_t bits = w.fixed32(); std::memcpy(&e.score, &bits, 4); }
        else if (f == 3 && t == 0) e.type = static_cast<PieceType>(w.varint());
        else w.skip(t);
      }
      m.pieces_.push_back(std::move(e));
    } else if (field == 2) {  // TrainerSpec
      while (!w.done()) {
        const uint64_t k = w.varint();
        const int f = static_cast<int>(k >> 3), t = static_cast<int>(k & 7);
        if (t != 0) { w.skip(t); continue; }
        const int64_t v = static_cast<int64_t>(w.varint());
        if (f == 3) model_type = static_cast<int>(v);
        else if (f == 35) m.byte_fallback_ = v != 0;
        else if (f == 40) m.unk_id_ = static_cast<int>(v);
        else if (f == 41) m.bos_id_ = static_cast<int>(v);
        else if (f == 42) m.eos_id_ = static_cast<int>(v);
      }
    } else if (field == 3) {  // NormalizerSpec
      while (!w.done()) {
        const uint64_t k = w.varint();
        const int f = static_cast<int>(k >> 3), t = static_cast<int>(k & 7);
        if (f == 1 && t == 2) normalizer_name = w.bytes();
        else if (f == 2 && t == 2) charsmap = w.bytes();
        else if (f == 3 && t == 0) m.add_dummy_prefix_ = w.varint() != 0;
        else if (f == 4 && t == 0) m.remove_extra_whitespaces_ = w.varint() != 0;
        else if (f == 5 && t == 0) m.escape_whitespaces_ = w.varint() != 0;
        else w.skip(t);
      }
    }
  }
  if (m.pieces_.empty()) fail(label, ": not a SentencePiece model (no pieces)");
  if (model_type != 2) {
    const char* names[] = {"?", "unigram", "bpe", "word", "char"};
    fail(label, ": unsupported SentencePiece model type '", model_type >= 0 && model_type <= 4 ? names[model_type] : "?",
         "' (supported: bpe; pass pre-tokenised input with --ids instead)");
  }
  if (!charsmap.empty() && normalizer_name != "identity") {
    fail(label, ": unsupported SentencePiece normalizer '", normalizer_name, "' (supported: identity; pass --ids instead)");
  }
  std::fill(std::begin(m.byte_ids_), std::end(m.byte_ids_), -1);
  for (int i = 0; i < m.size(); ++i) {
    const SentencePieceEntry& e = m.pieces_[i];
    if (e.type == PieceType::Normal || e.type == PieceType::UserDefined || e.type == PieceType::Unused) {
      m.mergeable_.emplace(e.piece, i);
      if (e.type == PieceType::UserDefined) m.user_defined_.push_back(e.piece);
    } else {
      m.reserved_.emplace(e.piece, i);
      const int byte = e.type == PieceType::Byte ? byte_piece_value(e.piece) : -1;
      if (byte >= 0) m.byte_ids_[byte] = i;
    }
  }
  if (m.unk_id_ < 0 || m.unk_id_ >= m.size()) fail(label, ": unk id ", m.unk_id_, " is out of range");
  return m;
}

std::vector<EncodedPiece> SentencePieceModel::encode(const std::string& text) const {
  // 1. Normalise (identity rules only) while remembering each normalised byte's origin.
  std::string norm;
  std::vector<int64_t> origin;  // origin[i] = input byte offset of normalised byte i
  size_t i = 0;
  if (remove_extra_whitespaces_) while (i < text.size() && text[i] == ' ') ++i;
  if (i >= text.size()) return {};
  if (add_dummy_prefix_) {
    norm += kSpace;
    origin.insert(origin.end(), kSpace.size(), static_cast<int64_t>(i));
  }
  bool prev_space = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    const size_t valid = valid_utf8_length(reinterpret_cast<const unsigned char*>(text.data()) + i, text.size() - i);
    if (valid == 0) {
      prev_space = false;
      norm += kReplacement;
      origin.insert(origin.end(), kReplacement.size(), static_cast<int64_t>(i));
      continue;
    }
    if (valid > 1) {
      prev_space = false;
      norm.append(text, i, valid);
      for (size_t k = 0; k < valid; ++k) origin.push_back(static_cast<int64_t>(i));
      i += valid - 1;
      continue;
    }
    if (c == ' ') {
      if (remove_extra_whitespaces_ && prev_space) continue;
      prev_space = true;
      const std::string& s = escape_whitespaces_ ? kSpace : std::string(" ");
      norm += s;
      origin.insert(origin.end(), s.size(), static_cast<int64_t>(i));
    } else {
      prev_space = false;
      norm += c;
      origin.push_back(static_cast<int64_t>(i));
    }
  }
  if (remove_extra_whitespaces_) {
    while (norm.size() >= kSpace.size() && norm.compare(norm.size() - kSpace.size(), kSpace.size(), kSpace) == 0 &&
           norm.size() > (add_dummy_prefix_ ? kSpace.size() : 0)) {
      norm.resize(norm.size() - kSpace.size());
      origin.resize(norm.size());
    }
  }
  origin.push_back(static_cast<int64_t>(text.size()));

  // 2. Split into characters (user-defined pieces stay whole and never merge).
  struct Symbol { int prev, next; size_t begin, size; bool frozen; };
  std::vector<Symbol> sym;
  for (size_t p = 0; p < norm.size();) {
    size_t len = 0;
    bool frozen = false;
    for (const std::string& u : user_defined_) {
      if (u.size() > len && norm.compare(p, u.size(), u) == 0) { len = u.size(); frozen = true; }
    }
    if (!frozen) len = std::min(utf8_length(static_cast<unsigned char>(norm[p])), norm.size() - p);
    const int idx = static_cast<int>(sym.size());
    sym.push_back({idx - 1, idx + 1, p, len, frozen});
    p += len;
  }
  if (!sym.empty()) sym.back().next = -1;

  // 3. Greedy BPE: repeatedly merge the adjacent pair whose union is the best-scoring
  //    piece; ties go to the leftmost pair (libsentencepiece's agenda order).
  struct Pair { int left, right; float score; size_t size; };
  auto worse = [](const Pair& a, const Pair& b) { return a.score < b.score || (a.score == b.score && a.left > b.left); };
  std::priority_queue<Pair, std::vector<Pair>, decltype(worse)> agenda(worse);
  auto consider = [&](int l, int r) {
    if (l < 0 || r < 0 || sym[l].frozen || sym[r].frozen) return;
    const auto it = mergeable_.find(norm.substr(sym[l].begin, sym[l].size + sym[r].size));
    if (it == mergeable_.end()) return;
    agenda.push({l, r, pieces_[it->second].score, sym[l].size + sym[r].size});
  };
  for (size_t s = 1; s < sym.size(); ++s) consider(static_cast<int>(s) - 1, static_cast<int>(s));
  while (!agenda.empty()) {
    const Pair top = agenda.top();
    agenda.pop();
    Symbol& l = sym[top.left];
    Symbol& r = sym[top.right];
    if (l.size == 0 || r.size == 0 || l.size + r.size != top.size || l.next != top.right) continue;
    l.size += r.size;
    r.size = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = top.left;
    consider(l.prev, top.left);
    consider(top.left, l.next);
  }

  // 4. Map symbols to ids, splitting merged-but-unused pieces and falling back to bytes.
  std::vector<EncodedPiece> out;
  std::function<void(size_t, size_t)> emit = [&](size_t begin, size_t size) {
    const std::string s = norm.substr(begin, size);
    int id = -1;
    if (const auto it = mergeable_.find(s); it != mergeable_.end()) id = it->second;
    else if (const auto jt = reserved_.find(s); jt != reserved_.end()) id = jt->second;
    if (id >= 0 && pieces_[id].type == PieceType::Unused && size > 1) {
      // libsentencepiece re-segments unused pieces into the pair they were merged from;
      // splitting at the best-scoring boundary reproduces that for the pieces seen in practice.
      for (size_t cut = utf8_length(static_cast<unsigned char>(norm[begin])); cut < size;
           cut += utf8_length(static_cast<unsigned char>(norm[begin + cut]))) {
        if (mergeable_.count(norm.substr(begin, cut)) && mergeable_.count(norm.substr(begin + cut, size - cut))) {
          emit(begin, cut);
          emit(begin + cut, size - cut);
          return;
        }
      }
    }
    const int64_t b = origin[begin], e = origin[begin + size];
    if (id >= 0 && pieces_[id].type != PieceType::Unused) {
      out.push_back({id, b, e});
    } else if (byte_fallback_) {
      for (size_t k = 0; k < size; ++k) {
        const int bid = byte_ids_[static_cast<unsigned char>(norm[begin + k])];
        out.push_back({bid >= 0 ? bid : unk_id_, b, e});
      }
    } else if (!out.empty() && out.back().id == unk_id_) {
      out.back().end = e;  // consecutive unknowns collapse into one, as in libsentencepiece
    } else {
      out.push_back({unk_id_, b, e});
    }
  };
  for (int s = sym.empty() ? -1 : 0; s >= 0; s = sym[s].next) emit(sym[s].begin, sym[s].size);
  return out;
}

std::string SentencePieceModel::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (const int64_t id64 : ids) {
    if (id64 < 0 || id64 >= size()) continue;
    const SentencePieceEntry& e = pieces_[id64];
    if (e.type == PieceType::Control) continue;
    const int byte = e.type == PieceType::Byte ? byte_piece_value(e.piece) : -1;
    if (byte >= 0) {
      out.push_back(static_cast<char>(byte));
    } else if (e.type == PieceType::Unknown) {
      out += " \xe2\x81\x87 ";
    } else {
      out += e.piece;
    }
  }
  std::string text;
  for (size_t p = 0; p < out.size();) {
    if (out.compare(p, kSpace.size(), kSpace) == 0) { text += ' '; p += kSpace.size(); }
    else text += out[p++];
  }
  if (add_dummy_prefix_ && !text.empty() && text[0] == ' ') text.erase(0, 1);
  return text;
}

}  // namespace kvscope
