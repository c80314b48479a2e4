#include "dump/dump_reader.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "dump/schema.h"
#include "io/h5.h"
#include "io/provenance.h"

namespace kvscope {

struct DumpReader::Impl {
  h5::File file;
};

DumpReader::DumpReader(DumpReader&&) noexcept = default;
DumpReader::~DumpReader() = default;

namespace {

void expect_shape(const h5::Dataset& d, const std::vector<int64_t>& want, const std::string& file) {
  const auto got = d.shape();
  if (got != want) {
    std::string g, w;
    for (auto x : got) g += (g.empty() ? "" : ",") + std::to_string(x);
    for (auto x : want) w += (w.empty() ? "" : ",") + std::to_string(x);
    fail(file, ": dataset ", d.path(), " has shape [", g, "] but the schema requires [", w, "] (corrupt file?)");
  }
}

}  // namespace

namespace {

char g_watched_path[4096];

extern "C" void on_read_timeout(int) {
  const char head[] = "kvscope: error: ";
  const char tail[] =
      ": reading the file did not finish within KVSCOPE_READ_TIMEOUT seconds (a pipe with no writer, a stalled "
      "network file system, or a corrupt file that libhdf5 loops on)\n";
  (void)!::write(2, head, sizeof(head) - 1);
  (void)!::write(2, g_watched_path, std::strlen(g_watched_path));
  (void)!::write(2, tail, sizeof(tail) - 1);
  ::_exit(1);
}

// Arms SIGALRM for the duration of a read; restores the previous handler.
class Watchdog {
 public:
  Watchdog(const std::string& path, unsigned seconds) : seconds_(seconds) {
    if (!seconds_) return;
    std::snprintf(g_watched_path, sizeof(g_watched_path), "%s", path.c_str());
    struct sigaction sa {};
    sa.sa_handler = on_read_timeout;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, &previous_);
    ::alarm(seconds_);
  }
  ~Watchdog() {
    if (!seconds_) return;
    ::alarm(0);
    sigaction(SIGALRM, &previous_, nullptr);
  }

 private:
  unsigned seconds_;
  struct sigaction previous_ {};
};

}  // namespace

DumpReader DumpReader::open(const std::string& path, unsigned watchdog_seconds) {
  const Watchdog watchdog(path, watchdog_seconds);
  DumpReader r;
  r.path_ = path;
  r.impl_ = std::make_unique<Impl>(Impl{h5::File::open_read(path)});
  const h5::Group root = r.impl_->file.root();
  check_schema(root, path, kDumpSchemaName, kDumpSchemaVersion, "re-run kvscope dump");
  r.num_layers_ = root.attr_int("num_layers");
  r.num_heads_ = root.attr_int("num_heads");
  r.num_kv_heads_ = root.attr_int("num_kv_heads");
  r.head_dim_ = root.attr_int("head_dim");
  r.attention_mode_ = root.attr_string("attention_mode");
  r.has_queries_ = root.attr_int("has_queries") != 0;
  auto parse_list = [&](const std::string& name) {
    std::vector<int64_t> out;
    const std::string s = root.attr_string(name);
    size_t i = 0;
    while (i < s.size()) {
      size_t j = s.find(',', i);
      if (j == std::string::npos) j = s.size();
      try {
        out.push_back(std::stoll(s.substr(i, j - i)));
      } catch (...) {
        fail(path, ": attribute '", name, "' is not a list of integers");
      }
      i = j + 1;
    }
    return out;
  };
  r.layers_ = parse_list("layers");
  r.full_layers_ = parse_list("full_attention_layers");
  r.full_heads_ = parse_list("full_attention_heads");
  if (r.num_layers_ <= 0 || r.num_heads_ <= 0 || r.num_kv_heads_ <= 0 || r.head_dim_ <= 0) fail(path, ": invalid model dimensions");
  for (int64_t l : r.layers_) if (l < 0 || l >= r.num_layers_) fail(path, ": dumped layer ", l, " out of range");
  for (int64_t h : r.full_heads_) if (h < 0 || h >= r.num_heads_) fail(path, ": attention head ", h, " out of range");

  const int64_t n_docs = root.attr_int("num_documents");
  if (n_docs <= 0) fail(path, ": num_documents is ", n_docs, "; a dump holds at least one document");
  const h5::Group docs = root.open_group("documents");
  for (int64_t d = 0; d < n_docs; ++d) {
    const h5::Group doc = docs.open_group(std::to_string(d));
    DumpDocument info;
    info.source = doc.attr_string("source");
    doc.open_dataset("token_ids").read_all(info.token_ids);
    info.has_token_strings = doc.has("token_strings");
    const int64_t T = static_cast<int64_t>(info.token_ids.size());
    if (T == 0) fail(path, ": document ", d, " holds no tokens");
    if (doc.attr_int("num_tokens") != T) {
      fail(path, ": document ", d, " says num_tokens ", doc.attr_int("num_tokens"), " but its token_ids hold ", T);
    }
    const h5::Group layers = doc.open_group("layers");
    const int64_t KV = r.num_kv_heads_, H = r.num_heads_, hd = r.head_dim_;
    for (int64_t l : r.layers_) {
      const h5::Group g = layers.open_group(std::to_string(l));
      for (const char* n : {"k_pre_rope", "k", "v"}) expect_shape(g.open_dataset(n), {KV, T, hd}, path);
      if (r.has_queries_) expect_shape(g.open_dataset("q"), {H, T, hd}, path);
      expect_shape(g.open_dataset("key_norm"), {KV, T}, path);
      expect_shape(g.open_dataset("value_norm"), {KV, T}, path);
      if (r.attention_mode_ != "none") {
        for (const char* n : {"attention_received", "attention_received_others", "last_query_attention"}) {
          expect_shape(g.open_dataset(n), {H, T}, path);
        }
        expect_shape(g.open_dataset("query_count"), {T}, path);
      }
      if (std::find(r.full_layers_.begin(), r.full_layers_.end(), l) != r.full_layers_.end()) {
        expect_shape(g.open_dataset("attention"), {static_cast<int64_t>(r.full_heads_.size()), T, T}, path);
      }
    }
    r.documents_.push_back(std::move(info));
  }
  return r;
}

std::string DumpReader::attribute(const std::string& name) const { return impl_->file.root().attr_string(name); }

// Every analysis reads through here: a NaN or Inf in a crafted or corrupt dump would turn
// into NaN singular values or sign-flipped correlations with exit 0.
void DumpReader::require_finite(const FloatArray& a, const std::string& dataset) const {
  for (size_t i = 0; i < a.data.size(); ++i) {
    if (!std::isfinite(a.data[i])) fail(path_, ": ", dataset, " holds a non-finite value (NaN or Inf) at element ", i);
  }
}

FloatArray DumpReader::read(int64_t document, int64_t layer, const std::string& name) const {
  if (document < 0 || document >= static_cast<int64_t>(documents_.size())) fail(path_, ": no document ", document);
  if (std::find(layers_.begin(), layers_.end(), layer) == layers_.end()) fail(path_, ": layer ", layer, " was not dumped");
  const auto g = impl_->file.root().open_group("documents").open_group(std::to_string(document)).open_group("layers").open_group(std::to_string(layer));
  const auto d = g.open_dataset(name);
  FloatArray a;
  a.shape = d.shape();
  d.read_all(a.data);
  require_finite(a, d.path());
  return a;
}

FloatArray DumpReader::read_head(int64_t document, int64_t layer, const std::string& name, int64_t head) const {
  if (document < 0 || document >= static_cast<int64_t>(documents_.size())) fail(path_, ": no document ", document);
  const auto g = impl_->file.root().open_group("documents").open_group(std::to_string(document)).open_group("layers").open_group(std::to_string(layer));
  const auto d = g.open_dataset(name);
  auto shape = d.shape();
  if (shape.empty() || head < 0 || head >= shape[0]) fail(path_, ": head ", head, " out of range for ", d.path());
  std::vector<int64_t> offset(shape.size(), 0), count = shape;
  offset[0] = head;
  count[0] = 1;
  FloatArray a;
  d.read_block(offset, count, a.data);
  a.shape.assign(shape.begin() + 1, shape.end());
  require_finite(a, d.path());
  return a;
}

}  // namespace kvscope
