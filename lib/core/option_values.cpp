#include "core/option_values.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace kvscope {

std::vector<std::string> split_option_list(const std::string& text, const std::string& option) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(start, comma - start);
    if (item.empty()) {
      if (text.empty()) fail(option, ": no values given");
      fail(option, " '", text, "': an empty item (two commas, or a comma at an end)");
    }
    if (std::find(items.begin(), items.end(), item) != items.end()) fail(option, " '", text, "': '", item, "' is given twice");
    items.push_back(item);
    start = comma + 1;
  }
  return items;
}

int64_t parse_whole(const std::string& text, const std::string& option, int64_t min, int64_t max) {
  const size_t digits_from = !text.empty() && (text[0] == '-' || text[0] == '+') ? 1 : 0;
  const bool digits = text.size() > digits_from &&
                      std::all_of(text.begin() + static_cast<long>(digits_from), text.end(), [](unsigned char c) { return std::isdigit(c); });
  if (!digits) fail(option, " '", text, "': expected a whole number");
  long long value = 0;
  try {
    value = std::stoll(text);
  } catch (const std::out_of_range&) {
    fail(option, " ", text, ": must be ", text[0] == '-' ? "at least " : "at most ", text[0] == '-' ? min : max);
  }
  if (value < min) fail(option, " ", text, ": must be at least ", min);
  if (value > max) fail(option, " ", text, ": must be at most ", max);
  return value;
}

double parse_real(const std::string& text, const std::string& option, double min, double max) {
  const char* begin = text.c_str();
  char* end = nullptr;
  const double value = text.empty() || std::isspace(static_cast<unsigned char>(text[0])) ? NAN : std::strtod(begin, &end);
  if (!std::isfinite(value) || end != begin + text.size()) fail(option, " '", text, "': expected a finite number");
  if (value < min || value > max) fail(option, " ", text, ": must be between ", min, " and ", max);
  return value;
}

}  // namespace kvscope
