#pragma once
#include <string>
#include <vector>

namespace kvscope {

// Parses an index selection such as "0-3,7" or "all" over [0, count) into sorted indices.
// `what` names the thing selected ("layer", "head") and `option` the flag it came from
// ("--layers"), both in errors. Refused: an empty selection, an empty item, a reversed range,
// an index past count, and an index selected twice ("1,1" or "0-3,2"), which is a typo more
// often than a request.
std::vector<int> parse_selection(const std::string& text, int count, const std::string& what, const std::string& option);

}  // namespace kvscope
