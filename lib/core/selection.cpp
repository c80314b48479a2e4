#include "core/selection.h"

#include <algorithm>
#include <cctype>
#include <limits>

#include "core/error.h"

namespace kvscope {
namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

long parse_index(const std::string& token, const std::string& full, const std::string& option) {
  const std::string t = trim(token);
  if (t.empty() || t.size() > 9 ||
      !std::all_of(t.begin(), t.end(), [](unsigned char c) { return std::isdigit(c); })) {
    fail(option, " '", full, "': '", t, "' is not a non-negative integer (expected e.g. '0-3,7' or 'all')");
  }
  return std::stol(t);
}

}  // namespace

std::vector<int> parse_selection(const std::string& text, int count, const std::string& what, const std::string& option) {
  std::vector<int> out;
  const std::string all = trim(text);
  if (all.empty()) fail(option, ": an empty selection (expected e.g. '0-3,7' or 'all'; leave the option out for its default)");
  if (all == "all") {
    for (int i = 0; i < count; ++i) out.push_back(i);
    return out;
  }
  std::vector<bool> chosen(static_cast<size_t>(std::max(count, 0)), false);
  size_t start = 0;
  while (start <= all.size()) {
    size_t comma = all.find(',', start);
    if (comma == std::string::npos) comma = all.size();
    const std::string item = trim(all.substr(start, comma - start));
    if (!item.empty() && item[0] == '-') fail(option, " '", all, "': '", item, "' is negative (", what, " indices start at 0)");
    const size_t dash = item.find('-');
    long lo, hi;
    if (dash == std::string::npos) {
      lo = hi = parse_index(item, all, option);
    } else {
      lo = parse_index(item.substr(0, dash), all, option);
      hi = parse_index(item.substr(dash + 1), all, option);
      if (hi < lo) fail(option, " '", all, "': range ", lo, "-", hi, " is reversed");
    }
    if (hi >= count) fail(option, " '", all, "': ", what, " ", hi, " does not exist (valid: 0-", count - 1, ")");
    for (long i = lo; i <= hi; ++i) {
      if (chosen[static_cast<size_t>(i)]) fail(option, " '", all, "': ", what, " ", i, " is selected twice");
      chosen[static_cast<size_t>(i)] = true;
      out.push_back(static_cast<int>(i));
    }
    start = comma + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace kvscope
