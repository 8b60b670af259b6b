/* The graph: building (nodes in topological order, checked as they are added),
 * allocating once for the largest batch, and running forward and backward through the
 * backend's kernels, which allocate nothing. */
#include <string.h>
#include <unistd.h>

#include "nn/nn_int.h"

sw_status sw_graph_new(sw_graph **out) {
  *out = NULL;
  sw_graph *g = sw_calloc(1, sizeof *g);
  if (!g) return sw_error(SW_STATUS_NOMEM, "out of memory");
  g->backend = &sw__cpu_backend;
  g->threads = 1;
  *out = g;
  return SW_STATUS_OK;
}

void sw_graph_free(sw_graph *g) {
  if (!g) return;
  for (size_t i = 0; i < g->n; i++) {
    sw__node *nd = &g->nodes[i];
    sw_free(nd->name);
    if (nd->data_of < 0 && !nd->borrowed) sw_free(nd->data);
    if (!nd->packed_borrowed) sw_free(nd->packed);
    if (!nd->grad_shared) sw_free(nd->grad);
    sw_free(nd->scratch);
  }
  sw_free(g->nodes);
  sw_free(g->params);
  sw_free(g->buffers);
  sw_threadpool_free(g->pool);
  sw_free(g);
}

static sw_status push_list(sw_node **list, size_t *n, sw_node v) {
  sw_node *l = sw_realloc(*list, (*n + 1) * sizeof *l);
  if (!l) return sw_error(SW_STATUS_NOMEM, "out of memory");
  l[(*n)++] = v;
  *list = l;
  return SW_STATUS_OK;
}

/* Appends a node with a unique name (generated from the op when name is NULL). */
static sw_status add_node(sw_graph *g, sw_op_type op, const char *name, sw__node **out, sw_node *id) {
  if (g->allocated) return sw_error(SW_STATUS_INVALID, "graph: nodes cannot be added after allocation");
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 32;
    sw__node *v = sw_realloc(g->nodes, cap * sizeof *v);
    if (!v) return sw_error(SW_STATUS_NOMEM, "out of memory");
    g->nodes = v;
    g->cap = cap;
  }
  char *nm = name ? sw_strdup(name) : sw_asprintf("%s_%zu", sw_op_onnx_type(op)[0] ? sw_op_onnx_type(op) : sw_op_name(op), g->n);
  if (!nm) return sw_error(SW_STATUS_NOMEM, "out of memory");
  if (sw_graph_find(g, nm) >= 0) {
    sw_status st = sw_error(SW_STATUS_INVALID, "graph: a node named '%s' exists already", nm);
    sw_free(nm);
    return st;
  }
  sw__node *nd = &g->nodes[g->n];
  memset(nd, 0, sizeof *nd);
  nd->op = op;
  nd->name = nm;
  nd->data_of = -1;
  nd->pool_into = -1;
  nd->a_scale = -1;
  sw_op_attrs_default(op, &nd->attrs);
  *id = (sw_node)g->n++;
  *out = nd;
  return SW_STATUS_OK;
}

static sw_status leaf(sw_graph *g, sw_op_type op, const char *name, sw_dtype dtype, int rank,
                      const int64_t *shape, bool batched, sw__node **out, sw_node *id) {
  if (rank < 0 || rank > SW_NN_MAX_RANK) return sw_error(SW_STATUS_INVALID, "graph: '%s': rank %d", name, rank);
  for (int i = batched ? 1 : 0; i < rank; i++)
    if (shape[i] < 0) return sw_error(SW_STATUS_INVALID, "graph: '%s': dimension %d is %lld", name, i, (long long)shape[i]);
  if (batched && (rank < 1 || shape[0] != -1))
    return sw_error(SW_STATUS_INVALID, "graph: input '%s' must have -1 (the batch) as its first dimension", name);
  sw_status st = add_node(g, op, name, out, id);
  if (st) return st;
  sw__node *nd = *out;
  nd->dtype = dtype;
  nd->rank = rank;
  for (int i = 0; i < rank; i++) nd->shape[i] = shape[i];
  nd->batched = batched;
  if (batched) nd->shape[0] = 1; /* until set_batch */
  if (!batched) {
    nd->capacity = (size_t)sw__elements(rank, shape) * sw_dtype_size(dtype);
    nd->data = sw_calloc(1, nd->capacity ? nd->capacity : 1);
    nd->owns_data = true;
    if (!nd->data) return sw_error(SW_STATUS_NOMEM, "out of memory for '%s'", name);
  }
  return SW_STATUS_OK;
}

sw_status sw_graph_input(sw_graph *g, const char *name, sw_dtype dtype, int rank, const int64_t *shape,
                         sw_node *out) {
  sw__node *nd;
  return leaf(g, SW_OP_INPUT, name, dtype, rank, shape, true, &nd, out);
}

sw_status sw_graph_param(sw_graph *g, const char *name, int rank, const int64_t *shape, sw_node *out) {
  sw__node *nd;
  sw_status st = leaf(g, SW_OP_PARAM, name, SW_DTYPE_F32, rank, shape, false, &nd, out);
  if (st) return st;
  nd->needs_grad = true;
  return push_list(&g->params, &g->n_params, *out);
}

sw_status sw_graph_buffer(sw_graph *g, const char *name, int rank, const int64_t *shape, sw_node *out) {
  sw__node *nd;
  sw_status st = leaf(g, SW_OP_PARAM, name, SW_DTYPE_F32, rank, shape, false, &nd, out);
  if (st) return st;
  return push_list(&g->buffers, &g->n_buffers, *out);
}

sw_status sw_graph_const(sw_graph *g, const char *name, sw_dtype dtype, int rank, const int64_t *shape,
                         const void *data, sw_node *out) {
  sw__node *nd;
  sw_status st = leaf(g, SW_OP_CONST, name, dtype, rank, shape, false, &nd, out);
  if (st) return st;
  if (nd->capacity) memcpy(nd->data, data, nd->capacity);
  return SW_STATUS_OK;
}

sw_status sw_graph_op(sw_graph *g, sw_op_type op, const sw_node *inputs, int n_inputs, const sw_op_attrs *attrs,
                      const char *name, sw_node *out) {
  if ((unsigned)op >= SW_OP_COUNT_ || op == SW_OP_INPUT || op == SW_OP_PARAM || op == SW_OP_CONST)
    return sw_error(SW_STATUS_INVALID, "graph: op %d is not an operation", (int)op);
  int want = sw__op_inputs(op);
  if (n_inputs < 1 || n_inputs > SW__MAX_INPUTS || (want >= 0 && n_inputs > want))
    return sw_error(SW_STATUS_INVALID, "graph: %s takes %d inputs, not %d", sw_op_onnx_type(op)[0] ? sw_op_onnx_type(op) : sw_op_name(op), want, n_inputs);
  if (!g->backend->forward[op] || !g->backend->backward[op])
    return sw_error(SW_STATUS_UNSUPPORTED, "graph: op %s has no %s kernel", sw_op_name(op), g->backend->name);
  for (int i = 0; i < n_inputs; i++)
    if (inputs[i] < -1 || inputs[i] >= (sw_node)g->n || (inputs[i] == -1 && i == 0))
      return sw_error(SW_STATUS_INVALID, "graph: %s input %d is not a node", sw_op_name(op), i);
  sw__node *nd;
  sw_node id;
  sw_status st = add_node(g, op, name, &nd, &id);
  if (st) return st;
  if (attrs) nd->attrs = *attrs;
  nd->n_inputs = want >= 0 ? want : n_inputs;
  for (int i = 0; i < nd->n_inputs; i++) nd->inputs[i] = i < n_inputs ? inputs[i] : -1;
  for (int i = 0; i < nd->n_inputs; i++) {
    const sw__node *in = sw__in(g, nd, i);
    if (!in) continue;
    nd->batched |= in->batched;
    nd->needs_grad |= in->needs_grad && in->dtype == SW_DTYPE_F32;
  }
  st = sw__op(op)->infer(g, nd);
  if (st) {
    /* take the node back out: the graph stays as it was */
    sw_free(nd->name);
    g->n--;
    return st;
  }
  *out = id;
  return SW_STATUS_OK;
}

/* Re-derives every shape for the current batch. */
static sw_status infer_all(sw_graph *g) {
  for (size_t i = 0; i < g->n; i++) {
    sw__node *nd = &g->nodes[i];
    if (nd->op == SW_OP_INPUT) {
      nd->shape[0] = g->batch;
      continue;
    }
    if (nd->op == SW_OP_PARAM || nd->op == SW_OP_CONST) continue;
    sw_status st = sw__op(nd->op)->infer(g, nd);
    if (st) return st;
  }
  return SW_STATUS_OK;
}

/* Memory that nodes can share, planned once the graph is complete:
 * - Flatten and Reshape only relabel the shape of contiguous data, so they view their
 *   input's data (their forward does nothing) and, when they are its only reader, its
 *   gradient too (their backward does nothing either);
 * - a Relu that is the only reader of a Conv or a Gemm is applied by that node as it
 *   writes its output, and views that output: the node's value is then the Relu's,
 *   which changes nothing for the Relu's backward (x > 0 exactly where relu(x) > 0) and
 *   nothing for the node's (it reads its inputs, never its output);
 * - a 2x2, stride-2 MaxPool that is the only reader of such a Relu is computed by the
 *   Conv too outside training (max commutes with the bias and the Relu, both monotone),
 *   from the sgemm's output while it is in cache; the Conv's own value is then not
 *   written, which only a backward pass would read (it refuses to run on it);
 * - a Mul by a one-element constant (the input scaling of an exported model) whose
 *   only reader is a Gemm taking it as A is applied by that Gemm outside training, as
 *   a factor of its alpha: the Gemm reads the Mul's input, and the Mul's value is not
 *   written.
 * Nodes marked as outputs (sw_graph_mark_output) keep their own values. */
static sw_status plan_sharing(sw_graph *g) {
  int *readers = sw_calloc(g->n ? g->n : 1, sizeof *readers);
  if (!readers) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < g->n; i++)
    for (int j = 0; j < g->nodes[i].n_inputs; j++)
      if (g->nodes[i].inputs[j] >= 0) readers[g->nodes[i].inputs[j]]++;
  for (size_t i = 0; i < g->n; i++) {
    sw__node *nd = &g->nodes[i];
    if (nd->n_inputs < 1 || nd->inputs[0] < 0) continue;
    sw_node xi = nd->inputs[0];
    sw__node *x = &g->nodes[xi];
    if ((nd->op == SW_OP_FLATTEN || nd->op == SW_OP_RESHAPE) && x->dtype == nd->dtype) {
      nd->data_of = x->data_of >= 0 ? x->data_of : xi;
      nd->fwd_noop = true;
      if (nd->needs_grad && x->needs_grad && readers[xi] == 1 && !x->is_output) nd->grad_shared = nd->bwd_noop = true;
    } else if (nd->op == SW_OP_RELU && (x->op == SW_OP_CONV || x->op == SW_OP_GEMM) && x->dtype == SW_DTYPE_F32 &&
               readers[xi] == 1 && !x->is_output && x->data_of < 0) {
      x->fused_relu = true;
      nd->data_of = xi;
      nd->fwd_noop = true;
    } else if (nd->op == SW_OP_MAX_POOL && x->op == SW_OP_RELU && x->data_of >= 0 && readers[xi] == 1 &&
               !x->is_output) {
      sw__node *conv = &g->nodes[x->data_of];
      const sw_op_attrs *a = &nd->attrs;
      if (conv->op == SW_OP_CONV && conv->fused_relu && conv->rank == 4 && a->kernel[0] == 2 && a->kernel[1] == 2 &&
          a->stride[0] == 2 && a->stride[1] == 2 && a->dilation[0] == 1 && a->dilation[1] == 1 && !a->pad[0] &&
          !a->pad[1] && !a->pad[2] && !a->pad[3]) {
        conv->pool_into = (sw_node)i;
        nd->pool_fused = true;
      }
    } else if (nd->op == SW_OP_GEMM && !nd->attrs.trans_a && x->op == SW_OP_MUL && x->dtype == SW_DTYPE_F32 &&
               readers[xi] == 1 && !x->is_output && x->data_of < 0 && x->n_inputs == 2 && x->inputs[0] >= 0 &&
               x->inputs[1] >= 0) {
      const sw__node *xa = &g->nodes[x->inputs[0]], *k = &g->nodes[x->inputs[1]];
      if ((k->op == SW_OP_CONST || k->op == SW_OP_PARAM) && k->dtype == SW_DTYPE_F32 &&
          sw__elements(k->rank, k->shape) == 1 && xa->dtype == SW_DTYPE_F32 && xa->rank == x->rank &&
          sw__elements(xa->rank, xa->shape) == sw__elements(x->rank, x->shape)) {
        nd->a_scale = xi;
        x->scale_fused = true;
      }
    }
  }
  sw_free(readers);
  return SW_STATUS_OK;
}

/* (Re)sizes every node's scratch for the current thread count and the largest batch. */
static sw_status size_scratch(sw_graph *g) {
  int64_t batch = g->batch;
  sw_status st = SW_STATUS_OK;
  if (batch != g->max_batch) {
    g->batch = g->max_batch;
    st = infer_all(g);
  }
  for (size_t i = 0; !st && i < g->n; i++) {
    sw__node *nd = &g->nodes[i];
    const sw__op_def *def = sw__op(nd->op);
    size_t bytes = def->scratch ? def->scratch(g, nd) : 0;
    if (bytes == nd->scratch_bytes) continue;
    sw_free(nd->scratch);
    nd->scratch = NULL;
    nd->scratch_bytes = 0;
    if (!bytes) continue;
    nd->scratch = sw_calloc(1, bytes);
    if (!nd->scratch) st = sw_error(SW_STATUS_NOMEM, "out of memory for '%s'", nd->name);
    else nd->scratch_bytes = bytes;
  }
  if (batch != g->batch) {
    g->batch = batch;
    sw_status st2 = infer_all(g);
    if (!st) st = st2;
  }
  return st;
}

sw_status sw_graph_alloc(sw_graph *g, int64_t max_batch) {
  if (g->allocated) return sw_error(SW_STATUS_INVALID, "graph: allocated already");
  if (max_batch < 1) return sw_error(SW_STATUS_INVALID, "graph: batch %lld", (long long)max_batch);
  g->batch = g->max_batch = max_batch;
  sw_status st = infer_all(g);
  if (!st) st = plan_sharing(g);
  if (st) return st;
  for (size_t i = 0; i < g->n; i++) {
    sw__node *nd = &g->nodes[i];
    size_t elems = (size_t)sw__elements(nd->rank, nd->shape);
    if (nd->data_of >= 0) { /* planned: the source comes earlier, so it has its memory */
      nd->data = g->nodes[nd->data_of].data;
      nd->capacity = g->nodes[nd->data_of].capacity;
    } else if (!nd->owns_data) {
      nd->capacity = elems * sw_dtype_size(nd->dtype);
      nd->data = sw_calloc(1, nd->capacity ? nd->capacity : 1);
      if (!nd->data) return sw_error(SW_STATUS_NOMEM, "out of memory for '%s'", nd->name);
    }
    if (nd->grad_shared) {
      nd->grad = g->nodes[nd->inputs[0]].grad;
    } else if (nd->needs_grad) {
      nd->grad = sw_calloc(elems ? elems : 1, sizeof(float));
      if (!nd->grad) return sw_error(SW_STATUS_NOMEM, "out of memory for the gradient of '%s'", nd->name);
    }
  }
  st = size_scratch(g);
  if (st) return st;
  g->allocated = true;
  return SW_STATUS_OK;
}

sw_status sw_graph_clone(const sw_graph *src, sw_graph **out) {
  *out = NULL;
  if (!src->allocated || src->training) return sw_error(SW_STATUS_INVALID, "graph: a clone needs an allocated graph outside training");
  sw_graph *g = sw_calloc(1, sizeof *g);
  sw__node *nodes = sw_calloc(src->n ? src->n : 1, sizeof *nodes);
  if (!g || !nodes) {
    sw_free(g);
    sw_free(nodes);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  g->nodes = nodes;
  g->n = g->cap = src->n;
  g->batch = src->batch;
  g->max_batch = src->max_batch;
  g->threads = 1;
  g->backend = src->backend;
  g->is_clone = true;
  sw_status st = SW_STATUS_OK;
  for (size_t i = 0; i < src->n; i++) {
    const sw__node *sn = &src->nodes[i];
    sw__node *nd = &g->nodes[i];
    *nd = *sn;
    nd->name = NULL;
    nd->grad = NULL;
    nd->grad_shared = false;
    nd->needs_grad = false;
    nd->scratch = NULL;
    nd->scratch_bytes = 0;
    nd->scratch_ready = false;
    /* constants and parameters are read only outside training, and so is a Gemm's
     * packed constant once the source has made it */
    nd->borrowed = sn->owns_data;
    nd->packed_borrowed = sn->packed != NULL;
    if (!nd->borrowed) nd->data = NULL;
    if (st) continue;
    if (!(nd->name = sw_strdup(sn->name))) st = sw_error(SW_STATUS_NOMEM, "out of memory");
    else if (nd->borrowed) continue;
    else if (nd->data_of >= 0) nd->data = g->nodes[nd->data_of].data; /* the source comes earlier */
    else if (!(nd->data = sw_calloc(1, nd->capacity ? nd->capacity : 1))) st = sw_error(SW_STATUS_NOMEM, "out of memory for '%s'", nd->name);
  }
  g->allocated = true;
  if (!st) st = sw_graph_set_threads(g, src->threads); /* sizes the scratch */
  if (st) {
    sw_graph_free(g);
    return st;
  }
  *out = g;
  return SW_STATUS_OK;
}

void sw_graph_mark_output(sw_graph *g, sw_node n) {
  SW_ASSERT(!g->allocated && n >= 0 && (size_t)n < g->n);
  g->nodes[n].is_output = true;
}

sw_status sw_graph_set_batch(sw_graph *g, int64_t n) {
  if (!g->allocated) return sw_error(SW_STATUS_INVALID, "graph: not allocated");
  if (n < 1 || n > g->max_batch)
    return sw_error(SW_STATUS_RANGE, "graph: batch %lld is outside 1..%lld", (long long)n, (long long)g->max_batch);
  if (n == g->batch) return SW_STATUS_OK;
  g->batch = n;
  return infer_all(g);
}

void sw_graph_set_training(sw_graph *g, bool training) { g->training = training && !g->is_clone; }

void sw_graph_set_step(sw_graph *g, uint64_t seed, int64_t step) {
  g->seed = seed;
  g->step = step;
}

sw_status sw_graph_set_threads(sw_graph *g, int threads) {
  if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  sw_threadpool_free(g->pool);
  g->pool = NULL;
  g->threads = threads;
  if (threads > 1) {
    sw_status st = sw_threadpool_new(threads, &g->pool);
    if (st) return st;
  }
  if (g->backend->set_threads) g->backend->set_threads(threads);
  /* scratch may be per thread (Conv's columns) */
  return g->allocated ? size_scratch(g) : SW_STATUS_OK;
}

typedef struct {
  sw_graph *g;
  size_t upto;
} zero_job;

static void zero_grads(void *ctx, size_t begin, size_t end) {
  zero_job *jb = ctx;
  /* the range is over bytes of all gradients laid end to end */
  size_t at = 0;
  for (size_t i = 0; i <= jb->upto && at < end; i++) {
    sw__node *nd = &jb->g->nodes[i];
    if (!nd->grad || nd->grad_shared) continue;
    size_t bytes = (size_t)sw__elements(nd->rank, nd->shape) * sizeof(float);
    size_t lo = begin > at ? begin - at : 0, hi = end - at < bytes ? end - at : bytes;
    if (lo < hi) memset((char *)nd->grad + lo, 0, hi - lo);
    at += bytes;
  }
}

void sw__parallel(sw_graph *g, size_t n, int64_t work, void (*fn)(void *ctx, size_t begin, size_t end), void *ctx) {
  sw_threadpool_for(work >= SW__PARALLEL_MIN_WORK ? g->pool : NULL, n, 0, fn, ctx);
}

sw_status sw_graph_forward(sw_graph *g) {
  if (!g->allocated) return sw_error(SW_STATUS_INVALID, "graph: not allocated");
  g->values_skipped = false; /* the kernels that skip values set it */
  for (size_t i = 0; i < g->n; i++) {
    sw__node *nd = &g->nodes[i];
    if (nd->op == SW_OP_INPUT || nd->op == SW_OP_PARAM || nd->op == SW_OP_CONST || nd->fwd_noop) continue;
    sw_status st = g->backend->forward[nd->op](g, nd);
    if (st) return sw_error_prefix(st, "%s: ", nd->name);
  }
  return SW_STATUS_OK;
}

sw_status sw_graph_backward(sw_graph *g, sw_node loss) {
  if (!g->allocated) return sw_error(SW_STATUS_INVALID, "graph: not allocated");
  if (loss < 0 || (size_t)loss >= g->n) return sw_error(SW_STATUS_INVALID, "graph: no node %d", loss);
  if (g->is_clone) return sw_error(SW_STATUS_INVALID, "graph: a clone is never trained");
  sw__node *ln = &g->nodes[loss];
  if (sw__elements(ln->rank, ln->shape) != 1) return sw_error(SW_STATUS_INVALID, "graph: '%s' is not a scalar", ln->name);
  if (!ln->needs_grad) return sw_error(SW_STATUS_INVALID, "graph: no parameter reaches '%s'", ln->name);
  if (g->values_skipped)
    return sw_error(SW_STATUS_INVALID, "graph: backward needs a forward pass in training mode (sw_graph_set_training)");
  size_t bytes = 0;
  for (size_t i = 0; i <= (size_t)loss; i++) {
    sw__node *nd = &g->nodes[i];
    if (nd->grad && !nd->grad_shared) bytes += (size_t)sw__elements(nd->rank, nd->shape) * sizeof(float);
  }
  zero_job zj = {g, (size_t)loss};
  sw__parallel(g, bytes, (int64_t)bytes / 16, zero_grads, &zj);
  ln->grad[0] = 1.0f;
  for (size_t i = (size_t)loss + 1; i-- > 0;) {
    sw__node *nd = &g->nodes[i];
    if (!nd->needs_grad || nd->op == SW_OP_INPUT || nd->op == SW_OP_PARAM || nd->op == SW_OP_CONST || nd->bwd_noop)
      continue;
    sw_status st = g->backend->backward[nd->op](g, nd);
    if (st) return sw_error_prefix(st, "%s (backward): ", nd->name);
  }
  return SW_STATUS_OK;
}

void *sw_graph_data(sw_graph *g, sw_node n) { return g->nodes[n].data; }
float *sw_graph_grad(sw_graph *g, sw_node n) { return g->nodes[n].grad; }
int sw_graph_rank(const sw_graph *g, sw_node n) { return g->nodes[n].rank; }
const int64_t *sw_graph_shape(const sw_graph *g, sw_node n) { return g->nodes[n].shape; }
int64_t sw_graph_elements(const sw_graph *g, sw_node n) { return sw__elements(g->nodes[n].rank, g->nodes[n].shape); }
sw_dtype sw_graph_dtype(const sw_graph *g, sw_node n) { return g->nodes[n].dtype; }
sw_op_type sw_graph_op_type(const sw_graph *g, sw_node n) { return g->nodes[n].op; }
const char *sw_graph_name(const sw_graph *g, sw_node n) { return g->nodes[n].name; }
const sw_op_attrs *sw_graph_attrs(const sw_graph *g, sw_node n) { return &g->nodes[n].attrs; }
size_t sw_graph_size(const sw_graph *g) { return g->n; }

int sw_graph_inputs(const sw_graph *g, sw_node n, const sw_node **inputs) {
  *inputs = g->nodes[n].inputs;
  return g->nodes[n].n_inputs;
}

sw_node sw_graph_find(const sw_graph *g, const char *name) {
  for (size_t i = 0; i < g->n; i++)
    if (!strcmp(g->nodes[i].name, name)) return (sw_node)i;
  return -1;
}

size_t sw_graph_params(const sw_graph *g, const sw_node **params) {
  *params = g->params;
  return g->n_params;
}

size_t sw_graph_buffers(const sw_graph *g, const sw_node **buffers) {
  *buffers = g->buffers;
  return g->n_buffers;
}
