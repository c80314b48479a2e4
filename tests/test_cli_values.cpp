// The value catalogue: every numeric or list option of every command, given zero, a negative
// number, NaN, infinity, a number too large to represent, an absurd but representable one,
// and (lists) an empty item and a duplicate item. Each value is either honoured (exit 0) or
// refused by name: a non-zero exit, no signal, and a last stderr line "kvscope: error: ..."
// that names the option. Which values are honoured is stated per option below, from the
// option's documented meaning (0 = all / default, -1 = the policy's split); every other
// value must be refused.
//
// The catalogue is checked complete against each command's --help: an option that takes a
// value and is not listed here (or among the path options, which the bad-input catalogue
// covers) fails CatalogueCoversEveryOption, so a new option cannot skip its value checks.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "model/random_model.h"
#include "support/cli.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

using testing::run_kvscope;

enum class Kind {
  Whole,  // an integer
  Real,   // a floating-point number
  List,   // comma-separated items
  Text,   // one word (a name, a range, a size): the values are listed per option
};

struct OptionCase {
  std::string option;
  Kind kind;
  std::set<std::string> honoured;       // values that must succeed
  std::vector<std::string> extra{};     // more values to try beyond the kind's catalogue
  std::string item{};                   // List: one item the command accepts
  std::vector<std::string> base_extra{};  // options this one needs to be read at all
  bool reduced = false;                 // a shared option: one value, the rest tried on `score`
  std::vector<std::string> base_override{};  // another mode of the command (bench --svd)
};

#if defined(__SANITIZE_ADDRESS__)
// Under the sanitizers each start costs about a second: the generic values, refused while
// the command line is parsed by the same validators the Release run checks, are left to
// that run; the values that reach the command's work (honoured ones, and the option's own
// extra values, mostly refused after the model or dump is read) run here too.
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// The values every option of a kind is given.
std::vector<std::string> catalogue_values(const OptionCase& c) {
  std::vector<std::string> v;
  switch (c.kind) {
    case Kind::Whole: v = {"0", "-1", "nan", "inf"}; break;
    case Kind::Real: v = {"0", "-1", "nan", "inf"}; break;
    case Kind::List: v = {"", "0", "-1", "nan", c.item + ",," + c.item, c.item + "," + c.item}; break;
    case Kind::Text: v = {""}; break;
  }
  if (c.reduced) v = {c.kind == Kind::Whole ? "-1" : ""};
  if (kSanitized) v.clear();
  v.insert(v.end(), c.extra.begin(), c.extra.end());
  for (const auto& h : c.honoured)
    if (std::find(v.begin(), v.end(), h) == v.end()) v.push_back(h);
  return v;
}

// passkey and needle need a model with a tokenizer.
const std::string kEmbeddedModel = std::string(KVSCOPE_SOURCE_DIR) + "/data/models/tinybooks";

// The random model bench and random-model build: one layer, small enough to start in moments.
const std::string kTinySpec = "layers=1,hidden=32,mlp=48,heads=2,kv_heads=1,vocab=64,context=64";

// --threads, --blas-threads, --device and --dtype come from one function for every command
// that loads a model; `score` gives them the whole catalogue, the others one value each.
std::vector<OptionCase> runtime_options(bool full) {
  std::vector<OptionCase> r{{"--threads", Kind::Whole, {"0"}, {"2000", "2.5", "99999999999999999999"}},
                            {"--blas-threads", Kind::Whole, {"0"}, {"2000", "2.5", "99999999999999999999"}},
                            {"--device", Kind::Text, {"cpu"}, {"tpu", "cpu:0", "nan"}},
                            {"--dtype", Kind::Text, {"float32"}, {"float64", "nan"}}};
  if (!full) {
    for (auto& c : r) {
      c.reduced = true;
      c.honoured.clear();
      c.extra.clear();
    }
  }
  return r;
}

std::vector<OptionCase> with(std::vector<OptionCase> a, const std::vector<OptionCase>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Every command's options, with the values each honours. Extra values probe an option's own
// limits; `base_extra` adds what makes the option read at all.
std::map<std::string, std::vector<OptionCase>> catalogue() {
  const std::vector<OptionCase> runtime = runtime_options(false);
  std::map<std::string, std::vector<OptionCase>> c;
  c["info"] = runtime;
  c["score"] = with({{"--max-tokens", Kind::Whole, {"0", "1000000000"}}, {"--chunk", Kind::Whole, {"1000000000"}}},
                    runtime_options(true));
  c["generate"] = with({{"--max-tokens", Kind::Whole, {"0", "1000000000"}},
                        {"--max-new", Kind::Whole, {}, {"1000000000"}},
                        {"--temperature", Kind::Real, {"0", "0.7", "1e300"}, {"1e400"}},
                        {"--top-k", Kind::Whole, {"0", "1000000000"}},
                        {"--top-p", Kind::Real, {"1", "0.9"}, {"1.5"}},
                        {"--seed", Kind::Whole, {"0", "1000000000", "18446744073709551615"}, {"18446744073709551616"}}},
                       runtime);
  c["dump"] = with({{"--max-tokens", Kind::Whole, {"0", "1000000000"}},
                    {"--layers", Kind::List, {"0", "all"}, {"2", "1-0", "all,0", "0-1,1"}, "0"},
                    {"--attention-layers", Kind::List, {"0"}, {}, "0"},
                    {"--heads", Kind::List, {"0", "all"}, {"4", "0-3,2"}, "0"},
                    {"--attention", Kind::Text, {"none", "full"}, {"nan", "all"}},
                    {"--store-dtype", Kind::Text, {"float16"}, {"bfloat16"}},
                    {"--chunk", Kind::Whole, {"0", "1000000000"}}},
                   runtime);
  c["spectrum"] = {{"--kinds", Kind::List, {"k", "k_pre_rope,v"}, {"q"}, "k"},
                   {"--tokens", Kind::Text, {"0:5", ":", "3:"}, {"5:0", "1.5:3", "0:1e3", "-1:3", "nan", "0", "3:3"}},
                   {"--threads", Kind::Whole, {"0"}, {"2000"}},
                   {"--method", Kind::Text, {"exact", "gram"}, {"nan", "Gram", "svd"}},
                   {"--gram-tolerance", Kind::Real, {"1e-4", "0.5", "1e-300"}, {"0.6", "1e-400"}, "", {"--method", "gram"}}};
  c["l2corr"] = {{"--seed", Kind::Whole, {"0", "1000000000", "18446744073709551615"}},
                 {"--ratio-steps", Kind::Whole, {"2", "10000"}, {"1", "10001"}}};
  c["ppl"] = with(
      {{"--max-tokens", Kind::Whole, {"0", "1000000000"}},
       {"--policy", Kind::List, {"knorm"}, {"nope"}, "knorm"},
       {"--budget", Kind::List, {"16", "0.5", "1000000000"}, {"1", "1.5", "0.0", "1e400"}, "16"},
       {"--weighting", Kind::List, {"uniform"}, {"nope"}, "uniform"},
       {"--receiver", Kind::Text, {"left", "similar"}, {"nan", "left,right"}},
       {"--sinks", Kind::Whole, {"0"}, {"16", "1000000000"}},
       {"--recent", Kind::Whole, {"0", "-1"}, {"-2", "1000000000"}},
       {"--seed", Kind::Whole, {"0", "1000000000"}},
       {"--skip-layers", Kind::List, {"0"}, {"2"}, "0"},
       {"--cam-merge", Kind::Whole, {"1000000000"}},
       {"--positions", Kind::Text, {"original"}, {"nan"}},
       {"--aggregation", Kind::Text, {"sum", "max"}, {"nan"}},
       {"--protocol", Kind::Text, {"stream"}, {"nan", "sliding"}},
       {"--window", Kind::Whole, {"20"}, {"1000000000"}, "", {"--protocol", "sliding"}},
       {"--stride", Kind::Whole, {"0", "20"}, {"21"}, "", {"--protocol", "sliding", "--window", "20"}},
       {"--prefill-chunk", Kind::Whole, {"1000000000"}},
       {"--batch", Kind::Whole, {"1000000000"}},
       {"--bootstrap", Kind::Whole, {"0", "100000"}, {"100001", "1000000000"}},
       {"--bootstrap-seed", Kind::Whole, {"0", "18446744073709551615"}, {"18446744073709551616"}},
       {"--bootstrap-block", Kind::Whole, {"1", "1000000000"}},
       {"--max-memory", Kind::Text, {"8G", "1.5GiB"}, {"0", "-1", "nan", "inf", "1e400", "0G", "-1G", "8X", "99999999999999999999G", "1K"}}},
      runtime);
  c["perturb"] = with({{"--at", Kind::Whole, {}, {"2", "39", "1000000000"}},
                       {"--steps", Kind::Whole, {"30"}, {"31", "1000000000"}},
                       {"--weighting", Kind::List, {"uniform", "evict,none"}, {"nope"}, "uniform"},
                       {"--layers", Kind::List, {"0", "all"}, {"2"}, "0"},
                       {"--heads", Kind::List, {"0", "all"}, {"2"}, "0"},
                       {"--sinks", Kind::Whole, {"0", "8"}, {"9"}},
                       {"--receiver", Kind::Text, {"left", "similar"}, {"nan", "left,right"}},
                       {"--positions", Kind::Text, {"in-cache"}, {"nan"}}},
                      runtime);
  const std::vector<std::string> sweep{"bench",         "--random", kTinySpec, "--sweep", "2", "--sweep-tokens", "32",
                                       "--sweep-budget", "8",        "--repeat", "1"};
  c["bench"] = with({{"--random", Kind::Text, {}, {"layers=0", "layers=-1", "layers=nan", "layers=2.5", "layers=1,,hidden=32",
                                                     "layers=1,layers=2", "hidden=99999999999", "depth=2"}},
                     {"--prefill", Kind::Whole, {"64"}, {"1000000000"}},
                     {"--context", Kind::Whole, {"16"}, {"1000000000"}},
                     {"--decode", Kind::Whole, {"2"}, {"1000000000"}},
                     {"--svd", Kind::Text, {"8,8,2", "8,8,8"},
                      {"0", "-1", "nan", "8,8", "8,,8", "8,8,2,", "8,8,2.5", "9999999,9999999,1", "8,8,1,1"}, "", {}, false, {"bench"}},
                     {"--svd-method", Kind::Text, {"exact", "gram"}, {"nan", "Gram"}, "", {}, false, {"bench", "--svd", "8,8,2"}},
                     {"--sweep", Kind::List, {"2", "1,2"}, {"1,01"}, "2", {}, false, sweep},
                     {"--sweep-tokens", Kind::Whole, {"32"}, {"1000000000"}, "", {}, false, sweep},
                     {"--sweep-budget", Kind::Whole, {"8"}, {"32"}, "", {}, false, sweep},
                     {"--repeat", Kind::Whole, {"1"}, {"1001"}}},
                    runtime);
  c["random-model"] = {{"--spec", Kind::Text, {"layers=1,hidden=16,mlp=16,heads=2,kv_heads=1,vocab=16,context=16,seed=0"},
                        {"layers=0", "layers=-1", "layers=nan", "layers=inf", "layers=2.5", "layers=1,,hidden=32", "layers=1,layers=2",
                         "hidden=99999999999", "depth=2"}}};
  c["train"] = {{"--vocab", Kind::Whole, {}, {"100", "1000000000"}},
                {"--hidden", Kind::Whole, {}, {"1000000000"}},
                {"--layers", Kind::Whole, {}, {"1000000000"}},
                {"--heads", Kind::Whole, {}},
                {"--kv-heads", Kind::Whole, {}},
                {"--mlp", Kind::Whole, {}, {"1000000000"}},
                {"--context", Kind::Whole, {"1000000000"}},
                {"--seq-len", Kind::Whole, {}, {"1000000000"}},
                {"--batch", Kind::Whole, {}, {"1000000000"}},
                {"--steps", Kind::Whole, {}},
                {"--warmup", Kind::Whole, {"0", "1000000000"}},
                {"--lr", Kind::Real, {"1e9"}},
                {"--min-lr-ratio", Kind::Real, {"0", "1"}, {"2"}},
                {"--weight-decay", Kind::Real, {"0"}},
                {"--clip", Kind::Real, {"1e30"}},
                {"--eval-every", Kind::Whole, {"1000000000"}},
                {"--eval-tokens", Kind::Whole, {"1000000000"}},
                {"--log-every", Kind::Whole, {"0", "1000000000"}},
                {"--checkpoint-every", Kind::Whole, {"1000000000"}},
                {"--time-limit", Kind::Real, {"0"}},
                {"--stop-at", Kind::Whole, {"0", "1"}, {"3", "1000000000"}},
                {"--seed", Kind::Whole, {"0", "1000000000"}},
                {"--store-dtype", Kind::Text, {"float32"}, {"float64"}},
                {"--device", Kind::Text, {"cpu"}, {"tpu", "cuda:x", "nan"}},
                {"--threads", Kind::Whole, {"0"}, {"2000"}},
                {"--blas-threads", Kind::Whole, {"0"}, {"2000"}}};
  // train --steps 1000000000 would be honoured, and run for days: not tried.
  for (auto& option : c["train"])
    if (option.option == "--steps") option.reduced = true;
  c["tokenize"] = {};
  // passkey and needle share ppl's cache settings (one validator set, tried in full on ppl).
  const std::vector<OptionCase> cache_settings = {
      {"--policy", Kind::List, {}, {}, "", {}, true}, {"--budget", Kind::List, {}, {}, "", {}, true},
      {"--weighting", Kind::List, {}, {}, "", {}, true}, {"--receiver", Kind::Text, {}, {}, "", {}, true},
      {"--sinks", Kind::Whole, {}, {}, "", {}, true}, {"--recent", Kind::Whole, {}, {}, "", {}, true},
      {"--seed", Kind::Whole, {}, {}, "", {}, true}, {"--skip-layers", Kind::List, {}, {}, "", {}, true},
      {"--cam-merge", Kind::Whole, {}, {}, "", {}, true}, {"--positions", Kind::Text, {}, {}, "", {}, true},
      {"--aggregation", Kind::Text, {}, {}, "", {}, true}, {"--prefill-chunk", Kind::Whole, {}, {}, "", {}, true}};
  const std::vector<OptionCase> retrieval = with(
      {{"--lengths", Kind::List, {"300", "250,300"}, {"1.5", "16", "4097", "100000000", "300,0300"}, "300"},
       {"--depths", Kind::List, {"0", "0.5", "0,1"}, {"1.5", "-0.1", "0.5,0.50", "1e400"}, "0.5"},
       {"--key-seeds", Kind::List, {"0", "1000000000"}, {"1.5", "0,00", "99999999999999999999"}, "0"},
       {"--compress", Kind::Text, {"decode"}, {"nan", "prefill,decode"}}},
      with(cache_settings, runtime));
  c["passkey"] = with(retrieval, {{"--digits", Kind::Whole, {"1", "18"}, {"19", "1000000000"}}});
  c["needle"] = with(retrieval, {{"--digits", Kind::Whole, {"1", "18"}, {"19", "1000000000"}},
                                 {"--needle-name", Kind::Text, {"Elinor"}, {"two words"}}});
  return c;
}

class ValueCatalogue : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("values");
    RandomModelSpec spec;  // 2 layers, 4 heads / 2 KV heads, vocab 256
    spec.max_position_embeddings = 4096;
    write_random_model((*dir_ / "m").string(), spec);
    {
      std::ofstream ids(*dir_ / "ids.txt");
      for (int i = 0; i < 40; ++i) ids << (i * 7 % 23) + 1 << ' ';  // repeats: ties happen
    }
    {
      std::ofstream text(*dir_ / "train.txt");
      const char* lines[] = {"The cat sat on the mat and looked at the dog.", "The dog sat on the rug and looked at the cat.",
                             "A bird sang in the tree while the cat slept.", "The sun rose over the hill and the birds sang."};
      for (int i = 0; i < 300; ++i) text << lines[i % 4] << "\n";
    }
    const auto r = run_kvscope({"dump", p("m"), "--ids", p("ids.txt"), "-o", p("dump.h5")});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string p(const std::string& name) { return (*dir_ / name).string(); }

  // A fresh output path per run: no run sees another's output.
  static std::string fresh(const std::string& stem) { return p(stem + std::to_string(++counter_)); }

  // The smallest invocation of `command` that succeeds, with fresh outputs.
  static std::vector<std::string> base(const std::string& command) {
    if (command == "info") return {"info", p("m")};
    if (command == "score") return {"score", p("m"), "--ids", p("ids.txt")};
    if (command == "generate") return {"generate", p("m"), "--ids", p("ids.txt"), "--max-new", "3"};
    if (command == "dump") return {"dump", p("m"), "--ids", p("ids.txt"), "-o", fresh("dump") + ".h5"};
    if (command == "spectrum") return {"spectrum", p("dump.h5"), "-o", fresh("spectrum") + ".h5"};
    if (command == "l2corr") return {"l2corr", p("dump.h5"), "-o", fresh("l2corr") + ".h5"};
    if (command == "ppl") {
      // knorm reads --skip-layers, weightedkv --weighting and --receiver, cam --cam-merge.
      return {"ppl", p("m"), "--ids", p("ids.txt"), "-o", fresh("ppl") + ".h5", "--policy", "knorm,weightedkv,cam", "--budget", "16"};
    }
    if (command == "perturb") return {"perturb", p("m"), "--ids", p("ids.txt"), "-o", fresh("perturb") + ".h5", "--at", "10", "--steps", "5"};
    if (command == "bench") return {"bench", "--random", kTinySpec, "--prefill", "8", "--context", "16", "--decode", "2", "--repeat", "1"};
    if (command == "passkey" || command == "needle") {
      std::vector<std::string> args{command, kEmbeddedModel, "-o", fresh(command) + ".h5", "--lengths", "300", "--depths", "0.5",
                                    "--key-seeds", "0", "--policy", "streaming", "--budget", "64"};
      if (command == "needle") args.insert(args.end(), {"--haystack", p("train.txt")});
      return args;
    }
    if (command == "random-model") return {"random-model", fresh("random"), "--spec", kTinySpec};
    if (command == "train") {
      return {"train", "--train", p("train.txt"), "--eval", p("train.txt"), "-o", fresh("trained"), "--vocab", "300",
              "--hidden", "16", "--layers", "1", "--heads", "2", "--kv-heads", "1", "--mlp", "16", "--context", "64",
              "--seq-len", "16", "--batch", "2", "--steps", "2", "--eval-every", "1", "--eval-tokens", "64",
              "--checkpoint-every", "1"};
    }
    ADD_FAILURE() << "no base invocation for " << command;
    return {};
  }

  // `args` without `option` (and its value), so that the case's value is the only one given.
  static std::vector<std::string> without(std::vector<std::string> args, const std::string& option) {
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == option) {
        args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
        break;
      }
    }
    return args;
  }


  static inline testing::TempDir* dir_ = nullptr;
  static inline int counter_ = 0;
};

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

TEST_P(ValueCatalogue, EveryValueIsHonouredOrRefusedByName) {
  const std::string command = GetParam();
  const auto all = catalogue();
  for (const OptionCase& c : all.at(command)) {
    for (const std::string& value : catalogue_values(c)) {
      std::vector<std::string> args = without(c.base_override.empty() ? base(command) : c.base_override, c.option);
      for (size_t i = 0; i + 1 < c.base_extra.size(); i += 2) {
        args = without(args, c.base_extra[i]);
        args.push_back(c.base_extra[i]);
        args.push_back(c.base_extra[i + 1]);
      }
      args.push_back(c.option);
      args.push_back(value);
      std::string shown = command + " " + c.option + " '" + value + "'";
      const auto r = run_kvscope(args);
      ASSERT_TRUE(r.exited) << shown << ": killed by signal " << r.signal;
      const std::string line = last_line(r.err);
      if (c.honoured.count(value)) {
        EXPECT_EQ(r.code, 0) << shown << " should be honoured:\n" << r.err;
      } else {
        EXPECT_NE(r.code, 0) << shown << " should be refused, but ran";
        EXPECT_EQ(line.rfind("kvscope: error: ", 0), 0u) << shown << ": no one-line error:\n" << r.err;
        EXPECT_NE(line.find(c.option), std::string::npos) << shown << ": the error does not name " << c.option << ":\n" << line;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Commands, ValueCatalogue,
                         ::testing::Values("info", "score", "generate", "dump", "spectrum", "l2corr", "ppl", "passkey", "needle", "perturb",
                                           "bench", "random-model", "train", "tokenize"),
                         [](const auto& info) {
                           std::string name = info.param;
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

// Options whose values are files or free text: the bad-input catalogue covers them.
const std::set<std::string> kPathOptions{"--text", "--ids", "--out", "--prompt", "--train", "--eval", "--haystack"};

TEST(ValueCatalogueCompleteness, CatalogueCoversEveryOption) {
  const auto all = catalogue();
  // "  -n,--max-new INT=64   ..." / "  --positions TEXT:{original,in-cache}=..." / "  --train TEXT:FILE ..."
  const std::regex option_line(R"(^\s+(?:-\w,)?(--[A-Za-z0-9-]+)\s+(INT|UINT|FLOAT|TEXT)(:FILE)?)");
  const auto help = run_kvscope({"--help"});
  for (const auto& [command, cases] : all) {
    ASSERT_NE(help.out.find("  " + command), std::string::npos) << command << " is not a kvscope command";
    const auto r = run_kvscope({command, "--help"});
    ASSERT_EQ(r.code, 0) << command;
    std::istringstream lines(r.out);
    int seen = 0;
    for (std::string line; std::getline(lines, line);) {
      std::smatch m;
      if (!std::regex_search(line, m, option_line)) continue;
      const std::string option = m[1];
      if (m[3].matched || kPathOptions.count(option)) continue;
      ++seen;
      const bool listed = std::any_of(cases.begin(), cases.end(), [&](const OptionCase& c) { return c.option == option; });
      EXPECT_TRUE(listed) << "kvscope " << command << " " << option << " takes a value but has no entry in the value catalogue";
    }
    EXPECT_EQ(seen, static_cast<int>(cases.size())) << command << ": the catalogue lists options --help does not show";
  }
  // Every command is in the catalogue.
  std::istringstream lines(help.out);
  const std::regex command_line(R"(^  ([a-z][a-z0-9-]+)\s)");
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, command_line)) EXPECT_TRUE(all.count(m[1])) << "command " << m[1] << " has no catalogue entry";
  }
}

}  // namespace
}  // namespace kvscope
