#pragma once
// The processes of one kvscope job. Started by mpirun or srun (and built with MPI), kvscope
// joins the job's MPI world; started any other way it is a cluster of one and never touches
// MPI, so the same binary runs on a laptop and on a cluster. Commands ask `cluster::info()`
// whether they lead (rank 0: plans, hands out work, writes) or follow.
//
// Messages are byte strings with a tag, point to point; the sweep's protocol is in
// eval/distributed_sweep.cpp. No MPI type appears here, so nothing else includes mpi.h.
#include <optional>
#include <string>

namespace kvscope::cluster {

struct Info {
  int rank = 0;
  int size = 1;
  int local_rank = 0;  // among the ranks on this node: which GPU a rank takes
  int local_size = 1;  // ranks on this node: they share its memory
  bool mpi = false;    // joined an MPI world (even one of size 1)
};

// True when this binary can join MPI jobs.
bool built_with_mpi();
// True when a launcher (mpirun, srun) started this process as a rank of a job.
bool launched_as_rank();

// Joins the MPI world when launched as a rank; otherwise a cluster of one. Refuses a
// multi-rank launch of a binary built without MPI: each rank would run the whole job and
// write the same outputs.
const Info& init(int* argc, char*** argv);
const Info& info();
// Leaves the MPI world (a no-op outside one). Called once, at exit.
void finalize();
// Ends every rank of the job with `code`: a failed rank must not leave the others waiting.
[[noreturn]] void abort(int code);

// Waits until every rank gets here (a no-op outside an MPI world).
void barrier();

struct Message {
  int source = -1;
  int tag = 0;
  std::string bytes;
};

void send(int destination, int tag, const std::string& bytes);
// Blocks until a message from `source` (-1: any rank) with `tag` (-1: any tag) arrives.
Message receive(int source = -1, int tag = -1);
// A message that has already arrived, if any.
std::optional<Message> try_receive();

}  // namespace kvscope::cluster
