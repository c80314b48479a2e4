#include "io/provenance.h"

#include <ctime>

#include "core/error.h"
#include "core/version.h"

namespace kvscope {

void write_provenance(const h5::Group& root, const std::string& schema, int64_t version, const std::string& command_line) {
  root.set_attr("schema", schema);
  root.set_attr("schema_version", version);
  root.set_attr("complete", int64_t{0});
  root.set_attr("kvscope_version", std::string(kvscope::version()));
  root.set_attr("git_commit", std::string(git_commit()));
  root.set_attr("library_versions", library_versions());
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  root.set_attr("created", std::string(buf));
  root.set_attr("command_line", command_line);
}

void write_source_dump(const h5::Group& root, const std::string& dump_path, const std::string& model_path,
                       const std::string& model_config, const std::string& dump_created) {
  root.set_attr("dump", dump_path);
  root.set_attr("model_path", model_path);
  root.set_attr("model_config", model_config);
  root.set_attr("dump_created", dump_created);
}

void mark_complete(const h5::Group& root) { root.set_attr("complete", int64_t{1}); }

void check_schema(const h5::Group& root, const std::string& path, const std::string& schema, int64_t version,
                  const std::string& rerun_hint) {
  if (!root.has_attr("schema") || root.attr_string("schema") != schema) {
    fail(path, ": not a ", schema, " file (root attribute schema is ",
         root.has_attr("schema") ? "'" + root.attr_string("schema") + "'" : std::string("missing"), ")");
  }
  const int64_t v = root.attr_int("schema_version");
  if (v != version) {
    fail(path, ": ", schema, " schema version ", v, " is not supported by this kvscope (expects version ", version, "); ", rerun_hint);
  }
  if (!root.has_attr("complete") || root.attr_int("complete") != 1) {
    fail(path, ": incomplete file (the run that wrote it did not finish); ", rerun_hint);
  }
}

}  // namespace kvscope
