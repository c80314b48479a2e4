#pragma once
// The bookkeeping of one (layer, KV head) of a budgeted cache: which physical slots hold live
// tokens, in sequence order, and per slot the token's original position, accumulated
// attention a, step count n, merge multiplicity and key norm (docs/methods.md §2). Slots
// are physically stable: a token that leaves frees its slot for the next token, so the
// tensors are never compacted; the order lives here.
//
// Invariants (check_invariants): the order holds distinct slots below the capacity, none
// of them free; every live slot has n >= 0, multiplicity >= 1, a finite a >= 0 and a
// finite key norm.
#include <cstdint>
#include <optional>
#include <vector>

namespace kvscope {

// A physical row of the cache tensors. Distinct from positions and from indices in
// sequence order, which are plain ints.
enum class SlotId : int32_t {};
inline int32_t index_of(SlotId s) { return static_cast<int32_t>(s); }

// A token's position in the document (what RoPE rotates by in `original` mode).
enum class TokenPosition : int64_t {};
inline int64_t value_of(TokenPosition p) { return static_cast<int64_t>(p); }

class HeadCells {
 public:
  // Live tokens, in sequence order.
  int size() const { return static_cast<int>(order_.size()); }
  SlotId slot(int index) const;
  const std::vector<SlotId>& order() const { return order_; }
  int64_t capacity() const { return static_cast<int64_t>(position_.size()); }

  TokenPosition position(SlotId s) const { return TokenPosition{position_[index_of(s)]}; }
  double attention_sum(SlotId s) const { return acc_[index_of(s)]; }      // a
  int64_t steps(SlotId s) const { return steps_[index_of(s)]; }           // n
  double average_attention(SlotId s) const;                               // a / max(1, n)
  double last_attention(SlotId s) const { return last_[index_of(s)]; }    // the last query's, aggregated over the group
  int64_t multiplicity(SlotId s) const { return mult_[index_of(s)]; }     // original tokens summarised by the slot
  float key_norm(SlotId s) const { return norm_[index_of(s)]; }

  // Grows the per-slot arrays; slots past the old capacity start free of any token.
  void reserve(int64_t capacity);
  // The slot a new token should take: the most recently freed one, if any.
  std::optional<SlotId> take_free_slot();
  // A new token at the end of the sequence, in a slot that holds no live token.
  void append(SlotId s, TokenPosition position, float key_norm);
  // One forward call's attention to a live slot: `added` joins a, `last` replaces the
  // last query's attention, `queries` more steps attended to it.
  void observe(SlotId s, double added, double last, int64_t queries);
  // The token at `index` leaves; `receiver` (an index, or -1) takes over its multiplicity.
  void remove(int index, int receiver = -1);
  void check_invariants() const;

  // Every per-slot array (indexed by slot, all of the same length), the live tokens in
  // sequence order and the freed slots, most recently freed last: a head rebuilt from the
  // device path's tensors (DeviceCells::to_host).
  struct Parts {
    std::vector<SlotId> order, free;
    std::vector<int64_t> position, steps, mult;
    std::vector<double> acc, last;
    std::vector<float> norm;
  };
  static HeadCells from_parts(Parts parts);

 private:
  std::vector<SlotId> order_;
  std::vector<SlotId> free_;
  std::vector<int64_t> position_, steps_, mult_;
  std::vector<double> acc_, last_;
  std::vector<float> norm_;
  std::vector<char> live_;
};

}  // namespace kvscope
