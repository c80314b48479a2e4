#pragma once
// Independent work items (documents) spread over the ranks of a job: rank 0 hands out item
// indices one at a time as ranks ask (`order`, rank 0's list: the items to do, in the order
// to hand them out), every rank runs `work` on what it gets, and rank 0 receives every
// result as bytes, its own included, in completion order. Rank 0 works too; `work` is given
// a `poll` to call now and then (e.g. every decode step), between which rank 0 answers the
// other ranks. With one rank it is a plain loop over `order`.
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace kvscope::cluster {

using FarmWork = std::function<std::string(size_t item, const std::function<void()>& poll)>;
using FarmResult = std::function<void(size_t item, std::string&& result)>;

// `plan_id` identifies the job's items (e.g. a hash of the documents): a rank whose id
// differs from rank 0's is refused by name. `on_result` is called on rank 0 only.
void farm_tasks(const std::vector<size_t>& order, const std::string& plan_id, const FarmWork& work, const FarmResult& on_result);

}  // namespace kvscope::cluster
