#pragma once
// Command-line options from a settings struct's for_each (eval/sweep_plan.h): each setting
// becomes one option with its help, its range or choices, and its default shown. `only`,
// when not empty, names the settings a command exposes (the others keep their defaults).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "common.h"
#include "eval/sweep_plan.h"

namespace kvscope::tools {

inline bool exposed(const std::vector<std::string>& only, const char* name) {
  return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
}

template <typename Settings>
void add_setting_options(CLI::App* cmd, Settings& settings, const std::vector<std::string>& only = {}) {
  settings.for_each([cmd, &only](auto& value, const SettingInfo& info) {
    if (!exposed(only, info.name)) return;
    using T = std::decay_t<decltype(value)>;
    const std::string flag = std::string("--") + info.name;
    if constexpr (std::is_same_v<T, bool>) {
      cmd->add_flag(flag, value, info.help);
    } else {
      CLI::Option* opt = cmd->add_option(flag, value, info.help)->capture_default_str();
      if constexpr (std::is_unsigned_v<T>) {
        opt->check(seed_value());
      } else if constexpr (std::is_integral_v<T>) {
        opt->check(at_least(info.min, info.max));
      } else if (!info.choices.empty()) {
        opt->check(CLI::IsMember(info.choices));
      } else {
        opt->check(non_empty());
      }
    }
  });
}

// The settings given on the command line, by name (SweepSettings' `given`).
template <typename Settings>
std::vector<std::string> given_settings(CLI::App* cmd, Settings& settings, const std::vector<std::string>& only = {}) {
  std::vector<std::string> given;
  settings.for_each([&](auto&, const SettingInfo& info) {
    if (exposed(only, info.name) && cmd->count(std::string("--") + info.name) > 0) given.push_back(info.name);
  });
  return given;
}

}  // namespace kvscope::tools
