#pragma once
// Command-line options from a settings struct's for_each (eval/sweep_plan.h): each setting
// becomes one option with its help, its range or choices, and its default shown.
#include <CLI/CLI.hpp>

#include <string>
#include <type_traits>
#include <vector>

#include "common.h"
#include "eval/sweep_plan.h"

namespace kvscope::tools {

template <typename Settings>
void add_setting_options(CLI::App* cmd, Settings& settings) {
  settings.for_each([cmd](auto& value, const SettingInfo& info) {
    using T = std::decay_t<decltype(value)>;
    const std::string flag = std::string("--") + info.name;
    if constexpr (std::is_same_v<T, bool>) {
      cmd->add_flag(flag, value, info.help);
    } else {
      CLI::Option* opt = cmd->add_option(flag, value, info.help)->capture_default_str();
      if constexpr (std::is_unsigned_v<T>) {
        opt->check(seed_value());
      } else if constexpr (std::is_integral_v<T>) {
        opt->check(at_least(info.min));
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
std::vector<std::string> given_settings(CLI::App* cmd, Settings& settings) {
  std::vector<std::string> given;
  settings.for_each([&](auto&, const SettingInfo& info) {
    if (cmd->count(std::string("--") + info.name) > 0) given.push_back(info.name);
  });
  return given;
}

}  // namespace kvscope::tools
