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

long parse_index(const std::string& token, const std::string& full, const std::string& what) {
  const std::string t = trim(token);
  if (t.empty() || t.size() > 9 ||
      !std::all_of(t.begin(), t.end(), [](unsigned char c) { return std::isdigit(c); })) {
    fail("invalid ", what, " selection '", full, "': '", t,
         "' is not a non-negative integer (expected e.g. '0-3,7' or 'all')");
  }
  return std::stol(t);
}

}  // namespace

std::vector<int> parse_selection(const std::string& text, int count, const std::string& what) {
  std::vector<int> out;
  const std::string all = trim(text);
  if (all.empty() || all == "all") {
    for (int i = 0; i < count; ++i) out.push_back(i);
    return out;
  }
  size_t start = 0;
  while (start <= all.size()) {
    size_t comma = all.find(',', start);
    if (comma == std::string::npos) comma = all.size();
    const std::string item = all.substr(start, comma - start);
    const size_t dash = item.find('-');
    long lo, hi;
    if (dash == std::string::npos) {
      lo = hi = parse_index(item, all, what);
    } else {
      lo = parse_index(item.substr(0, dash), all, what);
      hi = parse_index(item.substr(dash + 1), all, what);
      if (hi < lo) fail("invalid ", what, " selection '", all, "': range ", lo, "-", hi, " is reversed");
    }
    if (hi >= count) {
      fail("invalid ", what, " selection '", all, "': ", what, " ", hi, " does not exist (valid: 0-",
           count - 1, ")");
    }
    for (long i = lo; i <= hi; ++i) out.push_back(static_cast<int>(i));
    start = comma + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace kvscope
