// Bad input through the CLI: every case is one clear line on stderr and a non-zero exit,
// never a crash.
#include <gtest/gtest.h>

#include <algorithm>

#include <sys/stat.h>

#include <fstream>

#include "model/random_model.h"
#include "support/cli.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

using testing::run_kvscope;
using testing::TempDir;

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.vocab_size = 64;
    spec_.hidden_size = 16;
    spec_.intermediate_size = 24;
    spec_.num_heads = 2;
    spec_.num_kv_heads = 1;
    write_random_model(good().string(), spec_);
    std::ofstream(dir_ / "ids.txt") << "1 2 3 4 5";
  }
  std::filesystem::path good() const { return dir_ / "good"; }

  // A copy of the good model whose files the test then breaks.
  std::filesystem::path copy(const std::string& name) {
    const auto p = dir_ / name;
    std::filesystem::copy(good(), p, std::filesystem::copy_options::recursive);
    return p;
  }

  static std::string read(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static void write(const std::filesystem::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

  void expect_clean_failure(const std::vector<std::string>& args, const std::string& expect) {
    const auto r = run_kvscope(args);
    EXPECT_TRUE(r.exited) << "killed by signal " << r.signal << "; stderr: " << r.err;
    EXPECT_NE(r.code, 0);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("kvscope: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(expect), std::string::npos) << "expected '" << expect << "' in: " << r.err;
  }

  TempDir dir_{"badinput"};
  RandomModelSpec spec_;
};

TEST_F(BadInput, GoodModelWorks) {
  const auto r = run_kvscope({"score", good().string(), "--ids", (dir_ / "ids.txt").string()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("ppl"), std::string::npos);
}

TEST_F(BadInput, TruncatedSafetensors) {
  const auto m = copy("truncated");
  const std::string bytes = read(m / "model.safetensors");
  write(m / "model.safetensors", bytes.substr(0, bytes.size() - 100));
  expect_clean_failure({"score", m.string(), "--ids", (dir_ / "ids.txt").string()}, "outside the file");
}

TEST_F(BadInput, HeaderLengthBeyondFile) {
  const auto m = copy("hugeheader");
  std::string bytes = read(m / "model.safetensors");
  bytes[5] = '\x01';  // header length now ~2^40
  write(m / "model.safetensors", bytes);
  expect_clean_failure({"info", m.string()}, "header length");
}

TEST_F(BadInput, InvalidHeaderJson) {
  const auto m = copy("badjson");
  std::string bytes = read(m / "model.safetensors");
  bytes[8] = '[';
  bytes[9] = '!';
  write(m / "model.safetensors", bytes);
  expect_clean_failure({"info", m.string()}, "not valid JSON");
}

TEST_F(BadInput, TensorRangeOutsideFile) {
  const auto m = copy("range");
  std::string bytes = read(m / "model.safetensors");
  const size_t at = bytes.find("\"data_offsets\":[0,");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 18, "\"data_offsets\":[9,");  // same length, range now disagrees with the shape
  write(m / "model.safetensors", bytes);
  expect_clean_failure({"info", m.string()}, "model.safetensors");
}

TEST_F(BadInput, MissingTensor) {
  const auto m = copy("missing");
  std::string bytes = read(m / "model.safetensors");
  const size_t at = bytes.find("model.norm.weight");
  bytes.replace(at, 17, "model.mnrm.weight");
  write(m / "model.safetensors", bytes);
  expect_clean_failure({"info", m.string()}, "missing tensor 'model.norm.weight'");
}

TEST_F(BadInput, ShapeDisagreesWithConfig) {
  const auto m = copy("shape");
  std::string cfg = read(m / "config.json");
  cfg.replace(cfg.find("\"intermediate_size\": 24"), 23, "\"intermediate_size\": 20");
  write(m / "config.json", cfg);
  expect_clean_failure({"info", m.string()}, "config.json implies");
}

TEST_F(BadInput, UnsupportedDtype) {
  const auto m = copy("dtype");
  std::string bytes = read(m / "model.safetensors");
  bytes.replace(bytes.find("\"F32\""), 5, "\"I32\"");
  write(m / "model.safetensors", bytes);
  expect_clean_failure({"info", m.string()}, "unsupported dtype I32");
}

TEST_F(BadInput, UnknownArchitecture) {
  const auto m = copy("arch");
  std::string cfg = read(m / "config.json");
  cfg.replace(cfg.find("\"llama\""), 7, "\"gpt_neox\"");
  write(m / "config.json", cfg);
  expect_clean_failure({"info", m.string()}, "unsupported architecture 'gpt_neox'");
}

TEST_F(BadInput, MissingTokenizer) {
  write(dir_ / "story.txt", "Once upon a time");
  expect_clean_failure({"score", good().string(), "--text", (dir_ / "story.txt").string()}, "no tokenizer.json or tokenizer.model");
}

TEST_F(BadInput, EmptyText) {
  write(dir_ / "empty.txt", "  \n");
  expect_clean_failure({"score", good().string(), "--text", (dir_ / "empty.txt").string()}, "empty text");
}

TEST_F(BadInput, IdsOutOfVocabulary) {
  write(dir_ / "oov.txt", "1 2 64");
  expect_clean_failure({"score", good().string(), "--ids", (dir_ / "oov.txt").string()}, "out of vocabulary");
}

TEST_F(BadInput, MissingModelDirAndMissingInput) {
  expect_clean_failure({"info", (dir_ / "nope").string()}, "no such file or directory");
  expect_clean_failure({"score", good().string(), "--ids", (dir_ / "nope.txt").string()}, "cannot read");
  expect_clean_failure({"score", good().string()}, "no input");
}



// Dumps the fuzzer corrupted so that libhdf5 1.10 misbehaves: one loops forever reading a
// variable-length string from its global heap, one records a 4 GiB chunk so libhdf5 asks
// for that much memory before reading, one marks a 19-byte chunk as stored without its
// deflate filter so libhdf5 copies a whole 64-byte chunk out of it (a heap overflow under
// ASan, garbage token ids without). kvscope refuses each before libhdf5 reads it.
TEST(BadDump, FuzzerFoundCorruptionsAreRefusedBeforeReading) {
  const std::string dir = std::string(KVSCOPE_SOURCE_DIR) + "/tests/fuzz/regressions/";
  const std::vector<std::pair<std::string, std::string>> cases{
      {"libhdf5_global_heap_hang.h5", "is a variable-length string"},
      {"libhdf5_corrupt_chunk_size.h5", "claims 4294967295 bytes"},
      {"libhdf5_skipped_filter_overflow.h5", "token_ids is stored with some of its filters skipped"},
  };
  ::setenv("KVSCOPE_READ_TIMEOUT", "20", 1);
  for (const auto& [name, expect] : cases) {
    for (const char* cmd : {"info", "spectrum", "l2corr"}) {
      std::vector<std::string> args{cmd, dir + name};
      if (std::string(cmd) != "info") { args.push_back("-o"); args.push_back("/tmp/kvscope-never-written.h5"); }
      const auto r = testing::run_kvscope(args);
      EXPECT_TRUE(r.exited) << cmd << " " << name;
      EXPECT_EQ(r.code, 1) << cmd << " " << name;
      EXPECT_NE(r.err.find(expect), std::string::npos) << cmd << " " << name << ": " << r.err;
    }
  }
  ::unsetenv("KVSCOPE_READ_TIMEOUT");
  EXPECT_FALSE(std::filesystem::exists("/tmp/kvscope-never-written.h5"));
}

// A read that never finishes (here a FIFO nobody writes to) ends with one clear line and
// exit 1 once KVSCOPE_READ_TIMEOUT passes, instead of hanging the sweep that called it.
TEST(BadDump, ReadThatNeverFinishesEndsWithAClearError) {
  TempDir dir("fifo");
  const std::string fifo = (dir / "dump.h5").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ::setenv("KVSCOPE_READ_TIMEOUT", "2", 1);
  for (const char* cmd : {"spectrum", "l2corr"}) {
    const auto r = testing::run_kvscope({cmd, fifo, "-o", (dir / "out.h5").string()});
    EXPECT_TRUE(r.exited) << cmd;
    EXPECT_EQ(r.code, 1) << cmd;
    EXPECT_NE(r.err.find("did not finish within KVSCOPE_READ_TIMEOUT"), std::string::npos) << cmd << ": " << r.err;
  }
  ::unsetenv("KVSCOPE_READ_TIMEOUT");
  EXPECT_FALSE(std::filesystem::exists(dir / "out.h5"));
}


TEST(BadRuntime, UnsupportedDtypeOrDeviceIsAClearError) {
  testing::TempDir dir("dtype");
  RandomModelSpec spec;
  write_random_model((dir / "m").string(), spec);
  std::ofstream(dir / "ids.txt") << "1 2 3";
  const auto r = testing::run_kvscope({"score", (dir / "m").string(), "--ids", (dir / "ids.txt").string(), "--dtype", "float64"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unknown dtype"), std::string::npos) << r.err;
  const auto d = testing::run_kvscope({"score", (dir / "m").string(), "--ids", (dir / "ids.txt").string(), "--device", "tpu"});
  EXPECT_EQ(d.code, 1);
  EXPECT_NE(d.err.find("unknown device"), std::string::npos) << d.err;
  // float16 either works (a LibTorch with the kernels) or says which dtypes do.
  const auto h = testing::run_kvscope({"score", (dir / "m").string(), "--ids", (dir / "ids.txt").string(), "--dtype", "float16"});
  EXPECT_TRUE(h.exited);
  if (h.code != 0) EXPECT_NE(h.err.find("use --dtype float32 or bfloat16"), std::string::npos) << h.err;
  const auto b = testing::run_kvscope({"score", (dir / "m").string(), "--ids", (dir / "ids.txt").string(), "--dtype", "bfloat16"});
  EXPECT_EQ(b.code, 0) << b.err;
}

// KVSCOPE_ROW_KERNELS is honoured (the same NLL to float rounding) or refused by name.
TEST(BadRuntime, RowKernelChoiceIsHonouredOrRefusedByName) {
  testing::TempDir dir("row-kernels");
  RandomModelSpec spec;
  spec.num_layers = 1;
  write_random_model((dir / "m").string(), spec);
  std::ofstream(dir / "ids.txt") << "1 2 3 4 5 6";
  const std::vector<std::string> score{KVSCOPE_BINARY, "score", (dir / "m").string(), "--ids", (dir / "ids.txt").string(), "--decode"};
  const auto with = [&](const std::string& value) {
    std::vector<std::string> args{"KVSCOPE_ROW_KERNELS=" + value};
    args.insert(args.end(), score.begin(), score.end());
    return testing::run_program("env", args);
  };
  const auto bogus = with("avx3");
  EXPECT_EQ(bogus.code, 1);
  EXPECT_NE(bogus.err.find("KVSCOPE_ROW_KERNELS='avx3'"), std::string::npos) << bogus.err;
  EXPECT_EQ(std::count(bogus.err.begin(), bogus.err.end(), '\n'), 1) << bogus.err;
  const auto plain = testing::run_kvscope({"score", (dir / "m").string(), "--ids", (dir / "ids.txt").string(), "--decode"});
  ASSERT_EQ(plain.code, 0) << plain.err;
  const auto mean_nll = [](const std::string& out) { return std::stod(out.substr(out.find("mean_nll ") + 9)); };
  for (const std::string isa : {"generic", "avx2", "avx512"}) {
    const auto r = with(isa);
    if (r.code != 0) {  // a CPU without it says so
      EXPECT_NE(r.err.find("is not available"), std::string::npos) << isa << ": " << r.err;
      continue;
    }
    EXPECT_NEAR(mean_nll(r.out), mean_nll(plain.out), 1e-5) << isa;
  }
}

}  // namespace
}  // namespace kvscope
