#include "eval/retrieval_prompt.h"

#include <cctype>
#include <cmath>
#include <functional>
#include <sstream>

#include "core/error.h"
#include "model/tokenizer.h"

namespace kvscope {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string join(const std::vector<std::string>& words, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i) {
    if (i > begin) out += ' ';
    out += words[i];
  }
  return out;
}

int64_t token_count(const Tokenizer& tokenizer, const std::string& text) {
  return static_cast<int64_t>(tokenizer.encode(text).ids.size());
}

// What a cell of this prompt runs through: the prompt, the answer and the tokens decoded past it.
int64_t cell_tokens(const Tokenizer& tokenizer, const std::string& prompt, const std::string& answer) {
  return token_count(tokenizer, prompt + " " + answer) + kTokensPastAnswer;
}

// The largest n in [0, hi] whose prompt fits in `length` tokens (token counts grow with n).
int64_t largest_fitting(int64_t hi, int64_t length, const std::function<int64_t(int64_t)>& tokens_for) {
  int64_t lo = 0;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (tokens_for(mid) <= length) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// Tokens of the prompt, of the answer as it follows the prompt, and of the text before the
// key; refuses a tokenizer that merges the prompt's last token with the answer.
RetrievalPrompt finish(const Tokenizer& tokenizer, std::string text, const std::string& before_key, const std::string& answer) {
  RetrievalPrompt p;
  p.text = std::move(text);
  p.answer = answer;
  p.ids = tokenizer.encode(p.text).ids;
  const std::vector<int64_t> whole = tokenizer.encode(p.text + " " + answer).ids;
  if (whole.size() <= p.ids.size() || !std::equal(p.ids.begin(), p.ids.end(), whole.begin())) {
    fail("the tokenizer joins the prompt's last token with the answer, so the answer's tokens are not a continuation of the prompt");
  }
  p.answer_ids.assign(whole.begin() + static_cast<std::ptrdiff_t>(p.ids.size()), whole.end());
  p.needle_token = token_count(tokenizer, before_key);
  p.depth = static_cast<double>(p.needle_token) / static_cast<double>(p.ids.size());
  return p;
}

void check_spec(const PromptSpec& spec) {
  if (spec.length <= 0) fail("prompt length must be positive, got ", spec.length);
  if (!(spec.depth >= 0.0 && spec.depth <= 1.0)) fail("depth must be in [0, 1], got ", spec.depth);
  if (spec.digits < 1 || spec.digits > 18) fail("key digits must be 1 to 18, got ", spec.digits);
}

bool ends_sentence(const std::string& word) {
  size_t end = word.size();
  // Closing quotes and brackets after the full stop: ASCII, and the UTF-8 of ” and ’.
  while (end > 0) {
    if (word[end - 1] == '"' || word[end - 1] == '\'' || word[end - 1] == ')') {
      --end;
    } else if (end >= 3 && word.compare(end - 3, 3, "\xE2\x80\x9D") == 0) {
      end -= 3;
    } else if (end >= 3 && word.compare(end - 3, 3, "\xE2\x80\x99") == 0) {
      end -= 3;
    } else {
      break;
    }
  }
  return end > 0 && (word[end - 1] == '.' || word[end - 1] == '!' || word[end - 1] == '?');
}

}  // namespace

std::string retrieval_key(uint64_t seed, int64_t length, double depth, int digits) {
  if (digits < 1 || digits > 18) fail("key digits must be 1 to 18, got ", digits);
  uint64_t low = 1;
  for (int i = 1; i < digits; ++i) low *= 10;
  const uint64_t span = digits == 1 ? 10 : 9 * low;
  const uint64_t depth_millionths = static_cast<uint64_t>(std::llround(depth * 1e6));
  const uint64_t h = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(length) ^ splitmix64(depth_millionths)));
  return std::to_string((digits == 1 ? 0 : low) + h % span);
}

RetrievalPrompt passkey_prompt(const Tokenizer& tokenizer, const PromptSpec& spec) {
  check_spec(spec);
  const std::string key = retrieval_key(spec.seed, spec.length, spec.depth, spec.digits);
  const std::string key_line = "The pass key is " + key + ". Remember it. " + key + " is the pass key.";
  const std::string question = "What is the pass key? The pass key is";
  auto parts = [&](int64_t n) {
    const int64_t before = std::llround(spec.depth * static_cast<double>(n));
    std::vector<std::string> filler(static_cast<size_t>(n), kPasskeyFiller);
    const std::string head = std::string(kPasskeyTask) + "\n" + join(filler, 0, static_cast<size_t>(before)) + "\n";
    return std::make_pair(head, head + key_line + "\n" + join(filler, static_cast<size_t>(before), filler.size()) + "\n" + question);
  };
  const int64_t bare = cell_tokens(tokenizer, parts(0).second, key);
  if (bare > spec.length) fail("a passkey prompt and its answer need at least ", bare, " tokens without filler; length ", spec.length, " is too short");
  const int64_t n = largest_fitting(spec.length, spec.length, [&](int64_t m) { return cell_tokens(tokenizer, parts(m).second, key); });
  const auto [head, text] = parts(n);
  return finish(tokenizer, text, head, key);
}

void check_needle_name(const std::string& name, const std::string& what) {
  if (name.empty() || name.find_first_of(" \t\r\n\f\v") != std::string::npos) fail(what, " '", name, "': must be one word");
}

RetrievalPrompt needle_prompt(const Tokenizer& tokenizer, const std::string& haystack, const std::string& name,
                              const PromptSpec& spec) {
  check_spec(spec);
  check_needle_name(name, "the needle's name");
  std::vector<std::string> words;
  {
    std::istringstream in(haystack);
    std::string w;
    while (in >> w) words.push_back(w);
  }
  if (words.empty()) fail("the haystack holds no words");
  const std::string key = retrieval_key(spec.seed, spec.length, spec.depth, spec.digits);
  const std::string needle = "The special magic number of " + name + " is " + key + ".";
  const std::string question = "\nWhat is the special magic number of " + name + "? The special magic number of " + name + " is";
  auto parts = [&](int64_t m) {
    const size_t count = static_cast<size_t>(m);
    // The sentence end nearest the depth (ties: the earlier); the start and the end always qualify.
    const double target = spec.depth * static_cast<double>(count);
    size_t at = 0;
    for (size_t b = 0; b <= count; ++b) {
      const bool boundary = b == 0 || b == count || ends_sentence(words[b - 1]);
      if (boundary && std::abs(static_cast<double>(b) - target) < std::abs(static_cast<double>(at) - target)) at = b;
    }
    const std::string head = join(words, 0, at) + (at > 0 ? " " : "");
    return std::make_pair(head, head + needle + (at < count ? " " : "") + join(words, at, count) + question);
  };
  const int64_t bare = cell_tokens(tokenizer, parts(0).second, key);
  if (bare > spec.length) fail("a needle prompt and its answer need at least ", bare, " tokens without haystack; length ", spec.length, " is too short");
  const int64_t available = static_cast<int64_t>(words.size());
  const auto tokens_for = [&](int64_t k) { return cell_tokens(tokenizer, parts(k).second, key); };
  const int64_t m = largest_fitting(std::min(available, spec.length), spec.length, tokens_for);
  if (m == available && tokens_for(m) < spec.length) {
    fail("the haystack is too short: all its ", available, " words make a cell of ", tokens_for(m), " tokens, below the length ",
         spec.length);
  }
  const auto [head, text] = parts(m);
  return finish(tokenizer, text, head, key);
}

bool answer_matches(const std::string& generated, const std::string& answer) {
  const size_t start = generated.find_first_of("0123456789");
  if (start == std::string::npos) return false;
  size_t end = start;
  while (end < generated.size() && std::isdigit(static_cast<unsigned char>(generated[end]))) ++end;
  return generated.compare(start, end - start, answer) == 0 && end - start == answer.size();
}

}  // namespace kvscope
