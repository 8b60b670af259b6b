/* The ranks of a distributed training job over MPI: start-up and shut-down, the
 * collectives behind sw__comm_ops, and the point-to-point messages of the coordinator
 * modes. Without MPI in the build (or without mpirun) the world is one rank and the
 * collectives are no-ops. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/train_int.h"

#ifdef SW_HAVE_MPI
#include <mpi.h>
#endif

static sw_status local_allreduce(void *ctx, float *buf, size_t n) { return SW_STATUS_OK; }
static sw_status local_broadcast(void *ctx, void *buf, size_t bytes, int root) { return SW_STATUS_OK; }
static sw_status local_gather(void *ctx, const void *send, void *recv, size_t bytes, int root) {
  memcpy(recv, send, bytes);
  return SW_STATUS_OK;
}
static const sw__comm_ops local_ops = {"local", local_allreduce, local_broadcast, local_gather};

static sw__comm world = {0, 1, &local_ops, NULL};
#ifdef SW_HAVE_MPI
static bool mpi_started;
#endif
static bool broken; /* a failure the other ranks do not know of: they may be waiting on this one */

void sw__dist_broken(void) { broken = true; }
bool sw__dist_is_broken(void) { return broken; }

#ifdef SW_HAVE_MPI
static sw_status mpi_fail(int rc, const char *what) {
  broken = true;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return sw_error(SW_STATUS_IO, "MPI %s: %.*s", what, len, msg);
}

/* Waits for a request without spinning: Open MPI's blocking calls poll, and a rank
 * polling for its peers takes the core they need when ranks share cores (here 4 ranks
 * on 2), which tripled step times of the coordinator modes. A short spin first keeps the latency of a quick
 * answer; then 50 us naps. */
static int polite_wait(MPI_Request *req, MPI_Status *status) {
  int done = 0, rc = MPI_SUCCESS;
  for (int spin = 0; spin < 200 && !done && rc == MPI_SUCCESS; spin++) rc = MPI_Test(req, &done, status);
  struct timespec nap = {0, 50000};
  while (!done && rc == MPI_SUCCESS) {
    nanosleep(&nap, NULL);
    rc = MPI_Test(req, &done, status);
  }
  return rc;
}

/* MPI counts are ints: anything larger goes in pieces */
#define CHUNK ((size_t)1 << 28)

static sw_status mpi_allreduce(void *ctx, float *buf, size_t n) {
  for (size_t off = 0; off < n; off += CHUNK) {
    int c = (int)(n - off < CHUNK ? n - off : CHUNK);
    /* blocking: a non-blocking collective progresses only inside MPI_Test, and napping
     * between tests made each of its rounds wait (allreduce time x3 measured) */
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "allreduce");
  }
  return SW_STATUS_OK;
}

static sw_status mpi_broadcast(void *ctx, void *buf, size_t bytes, int root) {
  for (size_t off = 0; off < bytes; off += CHUNK) {
    int c = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
    int rc = MPI_Bcast((char *)buf + off, c, MPI_BYTE, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "broadcast");
  }
  return SW_STATUS_OK;
}

static sw_status mpi_gather(void *ctx, const void *send, void *recv, size_t bytes, int root) {
  if (bytes > CHUNK) return sw_error(SW_STATUS_RANGE, "gather of %zu bytes per rank", bytes);
  int rc = MPI_Gather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD);
  return rc == MPI_SUCCESS ? SW_STATUS_OK : mpi_fail(rc, "gather");
}

static const sw__comm_ops mpi_ops = {"mpi", mpi_allreduce, mpi_broadcast, mpi_gather};
#endif

/* Started by a launcher: Open MPI's mpirun, or a PMI/PMIx one (MPICH, Slurm). */
static bool launched_by_mpi(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

sw_status sw_dist_init(int *argc, char ***argv, int *rank, int *size) {
  *rank = 0;
  *size = 1;
  if (!launched_by_mpi()) return SW_STATUS_OK;
#ifdef SW_HAVE_MPI
  int flag = 0;
  MPI_Initialized(&flag);
  if (!flag) {
    /* Open MPI busy-polls inside blocking calls; on cores shared with other ranks (or
     * other work) the poller takes the CPU from the rank it waits for: yielding made the
     * allreduce 3-4x faster on this 2-core machine, and costs next to nothing on an
     * otherwise idle core. The user's own setting wins. */
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "init");
    /* errors come back as codes (and become sw_status) rather than aborting the job */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    mpi_started = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world.size);
  world.ops = &mpi_ops;
  *rank = world.rank;
  *size = world.size;
  return SW_STATUS_OK;
#else
  return sw_error(SW_STATUS_UNSUPPORTED, "started by mpirun, but this slipway was built without MPI (cmake -DSW_MPI=ON)");
#endif
}

void sw_dist_finish(bool failed) {
#ifdef SW_HAVE_MPI
  if (!mpi_started) return;
  mpi_started = false;
  /* a rank that failed alone may leave the others blocked in a collective: end the job.
   * Failures the ranks agreed on (trainer.c) end them all normally, with the same code. */
  if (failed && broken && world.size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
  MPI_Finalize();
#else
  (void)failed;
#endif
}

const sw__comm *sw__comm_world(void) { return &world; }

bool sw__p2p_available(void) {
#ifdef SW_HAVE_MPI
  return world.ops == &mpi_ops && world.size > 1;
#else
  return false;
#endif
}

sw_status sw__send(int to, int tag, const void *buf, size_t bytes) {
#ifdef SW_HAVE_MPI
  if (world.ops != &mpi_ops) return sw_error(SW_STATUS_UNSUPPORTED, "not in an MPI job");
  if (bytes > (size_t)INT32_MAX) return sw_error(SW_STATUS_RANGE, "message of %zu bytes", bytes);
  MPI_Request req;
  int rc = MPI_Isend(buf, (int)bytes, MPI_BYTE, to, tag, MPI_COMM_WORLD, &req);
  if (rc == MPI_SUCCESS) rc = polite_wait(&req, MPI_STATUS_IGNORE);
  return rc == MPI_SUCCESS ? SW_STATUS_OK : mpi_fail(rc, "send");
#else
  return sw_error(SW_STATUS_UNSUPPORTED, "no MPI in this build");
#endif
}

sw_status sw__recv(int from, int tag, void *buf, size_t cap, int *source, size_t *bytes) {
#ifdef SW_HAVE_MPI
  if (world.ops != &mpi_ops) return sw_error(SW_STATUS_UNSUPPORTED, "not in an MPI job");
  MPI_Status s;
  if (cap > (size_t)INT32_MAX) cap = (size_t)INT32_MAX;
  MPI_Request req;
  int rc = MPI_Irecv(buf, (int)cap, MPI_BYTE, from < 0 ? MPI_ANY_SOURCE : from, tag, MPI_COMM_WORLD, &req);
  if (rc == MPI_SUCCESS) rc = polite_wait(&req, &s);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "receive");
  int count = 0;
  MPI_Get_count(&s, MPI_BYTE, &count);
  if (source) *source = s.MPI_SOURCE;
  if (bytes) *bytes = (size_t)count;
  return SW_STATUS_OK;
#else
  return sw_error(SW_STATUS_UNSUPPORTED, "no MPI in this build");
#endif
}

#ifdef SW_HAVE_MPI
_Static_assert(sizeof(MPI_Request) <= sizeof(((sw__req *)0)->raw), "sw__req holds an MPI_Request");
#endif

sw_status sw__isend(int to, int tag, const void *buf, size_t bytes, sw__req *req) {
  req->active = false;
#ifdef SW_HAVE_MPI
  if (world.ops != &mpi_ops) return sw_error(SW_STATUS_UNSUPPORTED, "not in an MPI job");
  if (bytes > (size_t)INT32_MAX) return sw_error(SW_STATUS_RANGE, "message of %zu bytes", bytes);
  MPI_Request r;
  int rc = MPI_Isend(buf, (int)bytes, MPI_BYTE, to, tag, MPI_COMM_WORLD, &r);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "send");
  memcpy(req->raw, &r, sizeof r);
  req->active = true;
  return SW_STATUS_OK;
#else
  (void)to, (void)tag, (void)buf, (void)bytes;
  return sw_error(SW_STATUS_UNSUPPORTED, "no MPI in this build");
#endif
}

sw_status sw__irecv(int from, int tag, void *buf, size_t cap, sw__req *req) {
  req->active = false;
#ifdef SW_HAVE_MPI
  if (world.ops != &mpi_ops) return sw_error(SW_STATUS_UNSUPPORTED, "not in an MPI job");
  if (cap > (size_t)INT32_MAX) cap = (size_t)INT32_MAX;
  MPI_Request r;
  int rc = MPI_Irecv(buf, (int)cap, MPI_BYTE, from < 0 ? MPI_ANY_SOURCE : from, tag, MPI_COMM_WORLD, &r);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "receive");
  memcpy(req->raw, &r, sizeof r);
  req->active = true;
  return SW_STATUS_OK;
#else
  (void)from, (void)tag, (void)buf, (void)cap;
  return sw_error(SW_STATUS_UNSUPPORTED, "no MPI in this build");
#endif
}

sw_status sw__wait(sw__req *req, int *source, size_t *bytes) {
  if (!req->active) return SW_STATUS_OK;
  req->active = false;
#ifdef SW_HAVE_MPI
  MPI_Request r;
  memcpy(&r, req->raw, sizeof r);
  MPI_Status s;
  int rc = polite_wait(&r, &s);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "wait");
  if (source) *source = s.MPI_SOURCE;
  if (bytes) {
    int count = 0;
    MPI_Get_count(&s, MPI_BYTE, &count);
    *bytes = (size_t)count;
  }
  return SW_STATUS_OK;
#else
  (void)source, (void)bytes;
  return sw_error(SW_STATUS_UNSUPPORTED, "no MPI in this build");
#endif
}

void sw__cancel(sw__req *req) {
  if (!req->active) return;
  req->active = false;
#ifdef SW_HAVE_MPI
  MPI_Request r;
  memcpy(&r, req->raw, sizeof r);
  MPI_Cancel(&r);
  MPI_Wait(&r, MPI_STATUS_IGNORE);
#endif
}
