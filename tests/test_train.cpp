// kvscope train on a small text: the loss falls, the output is a Hugging Face directory the
// normal loader reads and scores with, and --resume continues from the checkpoint.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "eval/score.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "support/cli.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

std::vector<double> losses(const std::string& log) {
  std::vector<double> out;
  const std::regex re("step (\\d+)/\\d+ loss ([0-9.]+)");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator(); ++it) out.push_back(std::stod((*it)[2]));
  return out;
}

TEST(Train, LossFallsOutputLoadsAndResumeContinues) {
  testing::TempDir dir("train");
  // A small public-domain-style text made here: repetitive enough to learn in a few steps.
  {
    std::ofstream f(dir / "train.txt");
    const char* lines[] = {"The cat sat on the mat and looked at the dog.", "The dog sat on the rug and looked at the cat.",
                           "A bird sang in the tree while the cat slept.", "The sun rose over the hill and the birds sang."};
    for (int i = 0; i < 300; ++i) f << lines[i % 4] << (i % 7 == 0 ? "\n\n" : "\n");
    std::ofstream e(dir / "eval.txt");
    for (int i = 0; i < 20; ++i) e << lines[(i * 3) % 4] << "\n";
  }
  const std::string out = (dir / "model").string();
  std::vector<std::string> args{"train", "--train", (dir / "train.txt").string(), "--eval", (dir / "eval.txt").string(), "-o", out,
                                "--vocab", "300", "--hidden", "32", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--mlp", "64",
                                "--context", "128", "--seq-len", "32", "--batch", "8", "--steps", "40", "--warmup", "5",
                                "--lr", "5e-3", "--eval-every", "20", "--checkpoint-every", "20", "--log-every", "1"};
  // Stop at step 20 by running with --steps 20 first, then resume to 40.
  std::vector<std::string> first = args;
  first[std::find(first.begin(), first.end(), "--steps") - first.begin() + 1] = "20";
  auto r = testing::run_kvscope(first);
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream log_file(dir / "model" / "training_log.txt");
  std::stringstream log;
  log << log_file.rdbuf();
  const auto l = losses(log.str());
  ASSERT_EQ(l.size(), 20u) << log.str();
  const double early = (l[0] + l[1] + l[2]) / 3, late = (l[17] + l[18] + l[19]) / 3;
  EXPECT_LT(late, early - 1.0) << "the training loss did not fall";

  // The output is an ordinary model directory.
  const LlamaModel model = LlamaModel::load(out);
  EXPECT_EQ(model.config().num_kv_heads, 2);
  EXPECT_EQ(model.config().num_heads, 4);
  EXPECT_TRUE(model.config().tie_word_embeddings);
  const auto tok = Tokenizer::load(out, model.config());
  const auto ids = tok->encode("The cat sat on the mat and looked at the dog.").ids;
  const double trained = score_tokens(model, ids, ScoreOptions{}).mean_nll();
  EXPECT_LT(trained, std::log(300.0) - 0.5) << "no better than uniform over the vocabulary";

  r = testing::run_kvscope({"score", out, "--text", (dir / "eval.txt").string(), "--max-tokens", "100"});
  ASSERT_EQ(r.code, 0) << r.err;

  // Resume: continues at step 21 rather than starting over, and the loss keeps falling.
  args.push_back("--resume");
  r = testing::run_kvscope(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("resumed from step 20"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("step 1/40"), std::string::npos) << "started over: " << r.err;
  EXPECT_NE(r.out.find("trained 40 steps"), std::string::npos) << r.out;
  const LlamaModel resumed = LlamaModel::load(out);
  const double after = score_tokens(resumed, ids, ScoreOptions{}).mean_nll();
  EXPECT_LT(after, trained);
  // Without --resume or --force an existing model is never overwritten.
  r = testing::run_kvscope(first);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--resume"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvscope
