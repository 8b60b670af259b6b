/* Private header of the model engine: the node and graph structures, the op table
 * (shape inference per op), and the backend table that kernels plug into. */
#ifndef SLIPWAY_NN_INT_H
#define SLIPWAY_NN_INT_H

#include "slipway/nn.h"

#define SW__MAX_INPUTS 8

typedef enum { SW__LEAF_NONE, SW__LEAF_INPUT, SW__LEAF_PARAM, SW__LEAF_BUFFER, SW__LEAF_CONST } sw__leaf;

typedef struct sw__node {
  sw_op_type op;
  char *name;
  int n_inputs;
  sw_node inputs[SW__MAX_INPUTS]; /* -1: an optional input that is absent */
  sw_op_attrs attrs;
  sw_dtype dtype;
  int rank;
  int64_t shape[SW_NN_MAX_RANK]; /* current (after set_batch); -1 = batch before alloc */
  bool batched;                  /* the first dimension follows the batch */
  bool needs_grad;               /* a parameter is upstream */
  void *data;                    /* value: capacity for the largest batch */
  size_t capacity;               /* bytes of data */
  float *grad;                   /* gradient, same capacity (f32), when needs_grad */
  void *scratch;                 /* per-op working memory sized by the op's scratch fn */
  size_t scratch_bytes;
  bool owns_data;                /* leaves: params, buffers, consts */
  bool borrowed;                 /* data is another graph's (a clone's constants) */
  /* Planned at alloc (graph.c plan_aliases): memory one node borrows from another. */
  sw_node data_of;               /* -1, or the node whose data this one's data is */
  bool grad_shared;              /* grad is data_of's grad (a copy op, sole consumer) */
  bool fused_relu;               /* this Conv or Gemm applies the Relu that reads it, in place */
  sw_node pool_into;             /* -1, or the 2x2 MaxPool this Conv computes outside training */
  bool pool_fused;               /* this MaxPool is computed by its Conv outside training */
  sw_node a_scale;               /* -1, or the Mul by one constant whose input this Gemm reads
                                    as A outside training, the constant in its alpha */
  bool scale_fused;              /* this Mul is applied by the Gemm that reads it outside training */
  float *packed;                 /* a Gemm's constant B packed for sw__gemm_packed, made on first use */
  bool packed_finite;            /* and every float of it is finite */
  bool packed_borrowed;          /* packed is another graph's (sw_graph_clone) */
  bool fwd_noop, bwd_noop;       /* the kernel has nothing left to do */
  bool is_output;                /* read by the caller: never fused or shared */
  bool scratch_ready;            /* what the last forward left in scratch is complete */
} sw__node;

struct sw_graph {
  sw__node *nodes;
  size_t n, cap;
  int64_t batch, max_batch;
  bool allocated;
  bool training;
  bool is_clone;                 /* sw_graph_clone: inference only */
  bool values_skipped;           /* the last forward left fused-away values unwritten */
  uint64_t seed;
  int64_t step;
  int threads;
  sw_threadpool *pool;
  const struct sw__backend *backend;
  sw_node *params, *buffers;
  size_t n_params, n_buffers;
};

/* ---- ops: checks and shapes (ops.c) ---------------------------------------------- */

/* Sets node->dtype, rank and shape from its inputs' current shapes (batch included),
 * or fails with a message naming the node. Runs at build and at every set_batch. */
typedef sw_status (*sw__infer_fn)(sw_graph *g, sw__node *node);
/* Scratch bytes the op needs at the current shapes (called at alloc, max batch). */
typedef size_t (*sw__scratch_fn)(const sw_graph *g, const sw__node *node);

typedef struct {
  sw__infer_fn infer;
  sw__scratch_fn scratch; /* NULL: none */
} sw__op_def;

const sw__op_def *sw__op(sw_op_type op);
/* Inputs the op takes (the last ones may be absent: -1); -1 for any number. */
int sw__op_inputs(sw_op_type op);
static inline sw__node *sw__in(sw_graph *g, const sw__node *node, int i) {
  return node->inputs[i] >= 0 ? &g->nodes[node->inputs[i]] : NULL;
}
int64_t sw__elements(int rank, const int64_t *shape);

/* ---- backends --------------------------------------------------------------------- */

/* A kernel computes one node: forward writes node->data from its inputs' data;
 * backward adds the node's grad, through the op, into the grads of those inputs that
 * have one (input->grad != NULL). Kernels never allocate: scratch is theirs. */
typedef sw_status (*sw__kernel)(sw_graph *g, sw__node *node);

typedef struct sw__backend {
  const char *name;
  sw__kernel forward[SW_OP_COUNT_];
  sw__kernel backward[SW_OP_COUNT_];
  /* library-wide settings such as the BLAS thread count */
  void (*set_threads)(int threads);
} sw__backend;

extern const sw__backend sw__cpu_backend;

/* CPU kernels, one pair per op, defined in the cpu_*.c files; weak, so an op whose
 * kernels are not built is an error at graph build, not at link time. */
#define SW__CPU_KERNEL_DECL(name, onnx, n)                                        \
  sw_status sw__cpu_fwd_##name(sw_graph *g, sw__node *node) __attribute__((weak)); \
  sw_status sw__cpu_bwd_##name(sw_graph *g, sw__node *node) __attribute__((weak));
SW_OP_MAP(SW__CPU_KERNEL_DECL)
#undef SW__CPU_KERNEL_DECL

/* Below this many inner-loop steps a parallel loop costs more than it saves. */
#define SW__PARALLEL_MIN_WORK (1 << 15)

/* Runs fn over [0, n) on the graph's pool in one range per thread, or serially when
 * the graph has no pool or `work` (inner-loop steps in all) is too small to pay for
 * the hand-over. Ranges are fixed by n and the thread count alone. */
void sw__parallel(sw_graph *g, size_t n, int64_t work, void (*fn)(void *ctx, size_t begin, size_t end), void *ctx);

/* C = alpha op(A) op(B) + beta C, row-major, as cblas_sgemm, split into one block of
 * C's rows or columns per thread of the graph's pool (OpenBLAS itself runs on one
 * thread: the pool is the engine's only source of threads, so the two never fight
 * over the cores). g may be NULL: one thread. */
void sw__gemm(sw_graph *g, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* The same on the calling thread only (inside a range of sw__parallel). */
void sw__gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* True on a CPU with AVX-512F unless the environment variable var is off1 or off2
 * (either may be NULL): how each AVX-512 path below is chosen, and turned off for a
 * comparison. Callers keep the answer (it does not change). */
bool sw__avx512_unless(const char *var, const char *off1, const char *off2);

/* ---- the Gemm of a constant B (cpu_gemm_packed.c; AVX-512 CPUs) --------------------
 * True on a CPU with AVX-512 unless SLIPWAY_GEMM=openblas. */
bool sw__gemm_packed_fits(void);
/* Floats of B [k][n] (or [n][k] when trans_b) packed into panels of 64 columns. */
int64_t sw__gemm_packed_floats(int64_t k, int64_t n);
/* Packs B; true when all of it is finite. */
bool sw__gemm_pack(const float *b, bool trans_b, int64_t k, int64_t n, int64_t ldb, float *bp);
/* Rows [r0, r1) times panels [p0, p1) (columns [64 p0, 64 p1) within n) of
 * C = alpha A B + beta bias_row (each row; NULL: none), then a Relu when relu, with
 * A [m][k] (row stride lda) and B packed. skip_zeros (only for a finite B): a single
 * row skips the terms where A is zero, which leaves every sum as it was. */
void sw__gemm_packed(int64_t r0, int64_t r1, int64_t p0, int64_t p1, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *bp, float beta, const float *bias_row, bool relu,
                     float *c, int64_t ldc, bool skip_zeros);

/* ---- the direct convolution (cpu_conv_direct.c; AVX-512 CPUs) ----------------------
 * For a Conv with stride 1, no dilation, a kernel of 2 taps or more, output rows as wide
 * as input rows (pl + pr = kw - 1) and output channels in multiples of 8, on a CPU with
 * AVX-512 and unless SLIPWAY_CONV=im2col: true when sw__conv_direct can run it. */
bool sw__conv_direct_fits(int64_t m, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                          int64_t pl, int64_t wo, int64_t w);
/* Floats of the padded copy of one image's input. */
int64_t sw__conv_direct_xbuf_floats(int64_t c, int64_t kh, int64_t kw, int64_t ho, int64_t w);
/* W [m][c][kh][kw] into blocks of 8 output channels, tap-major: wr[m/8][c*kh*kw][8]. */
void sw__conv_direct_pack(const float *wt, int64_t m, int64_t c, int64_t kh, int64_t kw, float *wr);
/* One image's input [c][h][w] into the padded copy (pt rows on top). */
void sw__conv_direct_input(const float *x, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t pt,
                           int64_t pl, int64_t ho, float *xbuf);
/* y[m][ho * w] for the blocks of 8 output channels [mb0, mb1): bias (may be NULL) added,
 * then a Relu when relu. */
void sw__conv_direct(const float *xbuf, int64_t c, int64_t w, int64_t kh, int64_t kw, int64_t pl, int64_t ho,
                     const float *wr, const float *bias, bool relu, float *y, int64_t mb0, int64_t mb1);

/* The 2x2 stride-2 MaxPool of one plane o (rows w apart) into y [ho][wo], for a direct
 * forward whose output already holds its bias and Relu. */
void sw__conv_direct_pool(float *y, const float *o, int64_t w, int64_t ho, int64_t wo);

/* ---- Winograd F(2x2, 3x3) (cpu_conv_wino.c; AVX-512 CPUs) -------------------------
 * For a 3x3 Conv with stride 1, no dilation, input and output channels in multiples
 * of 16, on a CPU with AVX-512 and unless SLIPWAY_CONV is im2col or direct. */
bool sw__conv_wino_fits(int64_t c, int64_t m, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh,
                        int64_t dw);
/* Floats of the transformed kernels U [16][c][m], and of one image's transformed input
 * (its padded copy, then V [16][c][tiles]). */
int64_t sw__conv_wino_weights_floats(int64_t c, int64_t m);
int64_t sw__conv_wino_input_floats(int64_t c, int64_t ho, int64_t wo);
/* W [m][c][3][3] into U. */
void sw__conv_wino_pack(const float *wt, int64_t m, int64_t c, float *u);
/* U for W kept in cache (sw__conv_wino_cache_floats of it, zeroed or forgotten before
 * its first use): made again unless reuse and W is what it was made from last time, a
 * compare of W that costs far less than the transform. What else writes over the cache
 * forgets it first (sw__conv_wino_forget). */
int64_t sw__conv_wino_cache_floats(int64_t c, int64_t m);
const float *sw__conv_wino_kernels(const float *wt, int64_t m, int64_t c, float *cache, bool reuse);
void sw__conv_wino_forget(float *cache);
/* One image's input [c][h][w] (pt rows, pl columns of padding before it) into in_buf;
 * sw__conv_wino_v gives where V starts in it. */
void sw__conv_wino_input(const float *x, int64_t c, int64_t h, int64_t w, int64_t pt, int64_t pl, int64_t ho,
                         int64_t wo, float *in_buf);
float *sw__conv_wino_v(float *in_buf, int64_t c, int64_t ho, int64_t wo);
/* The outputs of channels [16 mv0, 16 mv1): y [m][ho][wo] with bias (may be NULL) and a
 * Relu when relu, or when pho > 0 the Relu then the 2x2 stride-2 MaxPool into
 * y [m][pho][pwo]. */
void sw__conv_wino(const float *v, const float *u, int64_t c, int64_t m, int64_t ho, int64_t wo, const float *bias,
                   bool relu, int64_t pho, int64_t pwo, float *y, int64_t mv0, int64_t mv1);

/* Broadcasting (numpy rules) of two shapes into out; false when incompatible. */
bool sw__broadcast_shape(int ra, const int64_t *a, int rb, const int64_t *b, int *rank, int64_t *out);

#endif
