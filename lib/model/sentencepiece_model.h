#pragma once
// A reader for SentencePiece tokenizer.model files and the BPE encoding algorithm of
// libsentencepiece, without linking it: Debian's libsentencepiece embeds its own protobuf,
// which cannot share a process with LibTorch's. Equivalence with libsentencepiece is
// tested on real books by a test binary that links the library (and not LibTorch).
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace kvscope {

enum class PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct SentencePieceEntry {
  std::string piece;
  float score = 0.0f;
  PieceType type = PieceType::Normal;
};

struct EncodedPiece {
  int id;
  int64_t begin, end;  // byte range in the input text
};

class SentencePieceModel {
 public:
  // Parses the serialized ModelProto; `label` names the file in errors. Only BPE models
  // with the identity normalizer are accepted; anything else is refused by name.
  static SentencePieceModel parse(const std::string& bytes, const std::string& label);

  std::vector<EncodedPiece> encode(const std::string& text) const;
  std::string decode(const std::vector<int64_t>& ids) const;

  int size() const { return static_cast<int>(pieces_.size()); }
  const std::string& piece(int id) const { return pieces_[id].piece; }
  int bos_id() const { return bos_id_; }
  int eos_id() const { return eos_id_; }
  int unk_id() const { return unk_id_; }

 private:
  std::vector<SentencePieceEntry> pieces_;
  std::unordered_map<std::string, int> mergeable_;  // normal, user-defined and unused pieces
  std::unordered_map<std::string, int> reserved_;   // control, unknown and byte pieces
  std::vector<std::string> user_defined_;
  int byte_ids_[256];
  bool byte_fallback_ = false;
  bool add_dummy_prefix_ = true;
  bool remove_extra_whitespaces_ = true;
  bool escape_whitespaces_ = true;
  int unk_id_ = 0, bos_id_ = 1, eos_id_ = 2;
};

}  // namespace kvscope
