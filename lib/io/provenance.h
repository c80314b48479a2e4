#pragma once
// The attributes every kvscope output file carries, written and checked in one place.
#include <string>

#include "io/h5.h"

namespace kvscope {

// schema, schema_version, complete = 0, kvscope_version, git_commit, library_versions,
// created (UTC) and command_line.
void write_provenance(const h5::Group& root, const std::string& schema, int64_t version, const std::string& command_line);
// Sets complete = 1; readers refuse files without it.
void mark_complete(const h5::Group& root);
// Copies where an analysis's input came from: the dump's path, model and creation time.
void write_source_dump(const h5::Group& root, const std::string& dump_path, const std::string& model_path,
                       const std::string& model_config, const std::string& dump_created);
// Refuses a file of another schema or version, or one whose run did not finish.
void check_schema(const h5::Group& root, const std::string& path, const std::string& schema, int64_t version,
                  const std::string& rerun_hint);

}  // namespace kvscope
