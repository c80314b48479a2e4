#pragma once
// Strict readers for option values that CLI11 sees only as text (lists, ranges, key=value
// specs). Each error names the option, so a refused value says where it came from.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace kvscope {

// "a,b,c" -> {"a", "b", "c"}. Refused: no items, an empty item ("a,,b", "a,"), and an item
// given twice, which in every list kvscope reads is a typo rather than a request.
std::vector<std::string> split_option_list(const std::string& text, const std::string& option);

// A whole number in [min, max], the whole text consumed: "2.5", "1e3", "nan" and "12abc"
// are refused, not truncated.
int64_t parse_whole(const std::string& text, const std::string& option, int64_t min = std::numeric_limits<int64_t>::min(),
                    int64_t max = std::numeric_limits<int64_t>::max());

// A finite real number in [min, max], the whole text consumed ("0.5", "1e-1"); "nan",
// "inf", "0.5x" and values outside the range are refused.
double parse_real(const std::string& text, const std::string& option, double min, double max);

// A list of values that must differ as values, not only as text ("1,01", "0.5,0.50"): each
// item parsed by `parse`, a repeat refused naming both spellings' option.
template <typename T>
std::vector<T> distinct_values(const std::string& text, const std::string& option, const std::function<T(const std::string&)>& parse);

}  // namespace kvscope

#include "core/error.h"

namespace kvscope {

template <typename T>
std::vector<T> distinct_values(const std::string& text, const std::string& option, const std::function<T(const std::string&)>& parse) {
  std::vector<T> out;
  for (const std::string& item : split_option_list(text, option)) {
    const T v = parse(item);
    if (std::find(out.begin(), out.end(), v) != out.end()) fail(option, " '", text, "': ", item, " repeats an earlier value");
    out.push_back(v);
  }
  return out;
}

}  // namespace kvscope
