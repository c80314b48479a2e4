#pragma once
// A finished run's output as bytes, for sending it from the rank that decoded it to the
// rank that writes the results (eval/distributed_sweep). Doubles travel as their bits, so
// the NLL the writer records is the decoder's, bit for bit.
#include <cstddef>
#include <string>

#include "eval/ppl.h"

namespace kvscope {

std::string encode_run_output(size_t run, const RunOutput& output);
// Refuses bytes that are not exactly one encoded run (wrong magic, truncated, trailing
// bytes, counts past the message): a malformed message fails by name, never reads past it.
RunOutput decode_run_output(const std::string& bytes, size_t* run);

}  // namespace kvscope
