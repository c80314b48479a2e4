#pragma once
// One document's perturbation result as bytes, for gathering it at rank 0 of an MPI job
// (kvscope perturb under mpirun). Doubles travel as their bits.
#include <string>

#include "eval/perturb.h"

namespace kvscope {

std::string encode_perturb_result(const PerturbDocumentResult& result);
// Refuses malformed bytes by name (eval/run_output_wire.h says how).
PerturbDocumentResult decode_perturb_result(const std::string& bytes);

}  // namespace kvscope
