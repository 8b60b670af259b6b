/* The trainer's own interface between the training loop (trainer.c) and the ranks of a
 * distributed job (dist.c). The collectives sit behind a table of function pointers so
 * a GPU reduction (NCCL) can take MPI's place; the coordinator modes (backup workers,
 * async) use tagged point-to-point messages, which only MPI provides here. */
#ifndef SLIPWAY_TRAIN_INT_H
#define SLIPWAY_TRAIN_INT_H

#include "slipway/train.h"

/* Collectives over every rank; each returns IO with the library's message on failure. */
typedef struct {
  const char *name;
  /* buf[i] = sum over ranks of buf[i], the same bits on every rank */
  sw_status (*allreduce_sum)(void *ctx, float *buf, size_t n);
  /* root's bytes to every rank */
  sw_status (*broadcast)(void *ctx, void *buf, size_t bytes, int root);
  /* each rank's `bytes` into root's recv (size * bytes, in rank order); recv unused elsewhere */
  sw_status (*gather)(void *ctx, const void *send, void *recv, size_t bytes, int root);
} sw__comm_ops;

typedef struct {
  int rank, size;
  const sw__comm_ops *ops;
  void *ctx;
} sw__comm;

/* The world of this process: size 1 with local no-op collectives unless it was started
 * by mpirun (and the build has MPI). Valid after sw_dist_init. */
const sw__comm *sw__comm_world(void);

/* Marks a failure the other ranks cannot learn of (sw_dist_finish then ends the job). */
void sw__dist_broken(void);
bool sw__dist_is_broken(void);

/* ---- point-to-point, for the coordinator modes (MPI only) ---------------------------
 * A message is one byte buffer: a sw__msg_head, then floats (parameters or gradients). */
enum { SW__TAG_PARAMS = 11, SW__TAG_GRAD = 12 };
enum { SW__MSG_PARAMS = 1, SW__MSG_DONE = 2, SW__MSG_GRAD = 3 };

typedef struct {
  int32_t kind, rank;
  int64_t step;              /* PARAMS: the step (version) of the parameters; GRAD: the one they were computed at */
  uint64_t pos_epoch, pos_index; /* PARAMS: where the batch to compute starts */
  int64_t examples;          /* GRAD: examples in the gradient */
  int64_t correct;           /* GRAD: correct predictions among them */
  double loss_sum;           /* GRAD: loss times examples */
  double compute_s, wait_s;  /* GRAD: the worker's time computing and waiting for this one */
  int32_t error, pad;        /* GRAD: non-zero when the worker failed (it stops after) */
} sw__msg_head;

/* true when point-to-point messages are available (an MPI world of size > 1) */
bool sw__p2p_available(void);
sw_status sw__send(int to, int tag, const void *buf, size_t bytes);
/* Receives from `from` (-1: any rank) into buf (cap bytes); *source and *bytes may be NULL. */
sw_status sw__recv(int from, int tag, void *buf, size_t cap, int *source, size_t *bytes);

/* Non-blocking halves of the same, so a worker computes while its gradient leaves and
 * its next parameters arrive, and rank 0 never waits for a worker that is computing.
 * The buffer belongs to MPI until the request is waited for; an inactive request (zeroed,
 * or already waited for) waits at once. */
typedef struct {
  unsigned char raw[16]; /* an MPI_Request */
  bool active;
} sw__req;
sw_status sw__isend(int to, int tag, const void *buf, size_t bytes, sw__req *req);
sw_status sw__irecv(int from, int tag, void *buf, size_t cap, sw__req *req);
/* Waits without spinning; for a receive, *source and *bytes (may be NULL) say what came. */
sw_status sw__wait(sw__req *req, int *source, size_t *bytes);
/* Withdraws a receive nothing will match any more (a worker ending on an error). */
void sw__cancel(sw__req *req);

#endif
