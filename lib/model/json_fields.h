#pragma once
// Typed reads of optional fields in untrusted JSON (tokenizer.json, tokenizer_config.json):
// a wrong type is refused with the field's name instead of escaping as a library exception.
#include <nlohmann/json.hpp>

#include <string>

#include "core/error.h"

namespace kvscope {

inline std::string json_string(const nlohmann::json& obj, const char* key, const std::string& fallback, const std::string& label) {
  if (!obj.is_object()) fail(label, ": expected an object, got ", obj.dump().substr(0, 80));
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_string()) fail(label, ": '", key, "' must be a string, got ", it->dump().substr(0, 80));
  return it->get<std::string>();
}

inline bool json_bool(const nlohmann::json& obj, const char* key, bool fallback, const std::string& label) {
  if (!obj.is_object()) fail(label, ": expected an object, got ", obj.dump().substr(0, 80));
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail(label, ": '", key, "' must be true or false, got ", it->dump().substr(0, 80));
  return it->get<bool>();
}

}  // namespace kvscope
