#pragma once
#include <string>
#include <vector>

namespace kvscope {

// Parses an index selection such as "0-3,7", "all" or "" (= all) over [0, count).
// Returns sorted, de-duplicated indices. `what` names the thing selected in errors
// ("layer", "head").
std::vector<int> parse_selection(const std::string& text, int count, const std::string& what);

}  // namespace kvscope
