#pragma once
// The prompts of the retrieval evaluations (methods §7): the standard passkey prompt and a
// needle in real text, fitted to a token length with the model's own tokenizer, the key at a
// chosen depth. LibTorch-free.
#include <cstdint>
#include <string>
#include <vector>

namespace kvscope {

class Tokenizer;

// The fixed text of the passkey prompt (Mohtashami & Jaggi's, as l2compress and kvpress use it).
inline constexpr const char* kPasskeyTask =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
    "I will quiz you about the important information there.";
inline constexpr const char* kPasskeyFiller =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

// Tokens decoded past the answer's length: enough to see whether the number ends where it should.
inline constexpr int64_t kTokensPastAnswer = 2;

struct RetrievalPrompt {
  std::string text;                // the prompt, ending where the answer starts
  std::string answer;              // the number the model should produce ("68401")
  std::vector<int64_t> ids;        // the prompt's tokens (BOS first when the tokenizer adds one)
  std::vector<int64_t> answer_ids; // the answer's tokens as they follow the prompt (" 68401")
  int64_t needle_token = 0;        // index in `ids` of the first token of the key or needle sentence
  double depth = 0;                // where the key landed: needle_token / ids.size()
};

struct PromptSpec {
  // Tokens of the prompt, its answer and kTokensPastAnswer together, so that a cell of length
  // L never runs past position L; filled as close to it as whole sentences (words) allow.
  int64_t length = 0;
  double depth = 0;    // share of the filler placed before the key, in [0, 1]
  uint64_t seed = 0;   // picks the key
  int digits = 5;      // of the key
};

// A key of `digits` digits (no leading zero) for (seed, length, depth): the same cell gets
// the same key under every policy, other cells other keys (methods §7).
std::string retrieval_key(uint64_t seed, int64_t length, double depth, int digits);

// TASK \n PREFIX \n "The pass key is K. Remember it. K is the pass key." \n SUFFIX \n
// "What is the pass key? The pass key is" -- PREFIX and SUFFIX whole filler sentences.
RetrievalPrompt passkey_prompt(const Tokenizer& tokenizer, const PromptSpec& spec);

// Refuses a needle name that is not one word (empty, or with whitespace), naming `what`.
void check_needle_name(const std::string& name, const std::string& what);

// The haystack's first words (whitespace runs collapsed to one space), "The special magic
// number of NAME is N." inserted at the sentence end nearest the depth, then
// "\nWhat is the special magic number of NAME? The special magic number of NAME is".
RetrievalPrompt needle_prompt(const Tokenizer& tokenizer, const std::string& haystack, const std::string& name,
                              const PromptSpec& spec);

// Exact match: the first run of digits in `generated` is `answer`.
bool answer_matches(const std::string& generated, const std::string& answer);

}  // namespace kvscope
