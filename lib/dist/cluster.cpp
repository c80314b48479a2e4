#include "dist/cluster.h"

#include <cstdlib>

#include "core/error.h"

#ifdef KVSCOPE_WITH_MPI
// The C API only: Open MPI and MPICH otherwise pull in their deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace kvscope::cluster {
namespace {

Info g_info;
bool g_initialised = false;

// The launchers' own variables: Open MPI's mpirun, PMI-2 (MPICH, Slurm's --mpi=pmi2) and
// PMIx (Open MPI 4+, Slurm's --mpi=pmix).
int launcher_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    if (const char* v = std::getenv(name)) return std::atoi(v);
  }
  return std::getenv("PMIX_RANK") ? 2 : 0;  // PMIx may not export a size; any rank means a job
}

}  // namespace

bool built_with_mpi() {
#ifdef KVSCOPE_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool launched_as_rank() { return launcher_size() > 0; }

const Info& init(int* argc, char*** argv) {
  if (g_initialised) return g_info;
  g_initialised = true;
  if (!launched_as_rank()) return g_info;
#ifdef KVSCOPE_WITH_MPI
  MPI_Init(argc, argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_info.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_info.size);
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_info.rank, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &g_info.local_rank);
  MPI_Comm_size(node, &g_info.local_size);
  MPI_Comm_free(&node);
  g_info.mpi = true;
  // Errors are reported by kvscope, once, in its own words; then the job is aborted.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
#else
  (void)argc;
  (void)argv;
  if (launcher_size() > 1)
    fail("started as one of ", launcher_size(), " MPI ranks, but this kvscope was built without MPI; every rank would run the whole "
         "job: install libopenmpi-dev and rebuild (scripts/setup.sh), or run one process");
#endif
  return g_info;
}

const Info& info() { return g_info; }

void finalize() {
#ifdef KVSCOPE_WITH_MPI
  if (g_info.mpi) {
    g_info.mpi = false;
    MPI_Finalize();
  }
#endif
}

void abort(int code) {
#ifdef KVSCOPE_WITH_MPI
  if (g_info.mpi) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::_Exit(code);
}

void barrier() {
#ifdef KVSCOPE_WITH_MPI
  if (g_info.mpi) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

#ifdef KVSCOPE_WITH_MPI
namespace {
void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(rc, text, &length);
    fail("MPI ", what, " failed on rank ", g_info.rank, ": ", std::string(text, static_cast<size_t>(length)));
  }
}

Message receive_probed(const MPI_Status& status) {
  int count = 0;
  check(MPI_Get_count(&status, MPI_BYTE, &count), "get_count");
  Message m;
  m.source = status.MPI_SOURCE;
  m.tag = status.MPI_TAG;
  m.bytes.resize(static_cast<size_t>(count));
  check(MPI_Recv(m.bytes.data(), count, MPI_BYTE, m.source, m.tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "receive");
  return m;
}
}  // namespace

void send(int destination, int tag, const std::string& bytes) {
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) fail("internal: an MPI message over 2 GiB");
  check(MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, destination, tag, MPI_COMM_WORLD), "send");
}

Message receive(int source, int tag) {
  MPI_Status status;
  check(MPI_Probe(source < 0 ? MPI_ANY_SOURCE : source, tag < 0 ? MPI_ANY_TAG : tag, MPI_COMM_WORLD, &status), "probe");
  return receive_probed(status);
}

std::optional<Message> try_receive() {
  int arrived = 0;
  MPI_Status status;
  check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &arrived, &status), "probe");
  if (!arrived) return std::nullopt;
  return receive_probed(status);
}
#else
void send(int, int, const std::string&) { fail("internal: cluster::send in a build without MPI"); }
Message receive(int, int) { fail("internal: cluster::receive in a build without MPI"); }
std::optional<Message> try_receive() { return std::nullopt; }
#endif

}  // namespace kvscope::cluster
