/* ONNX export: the inference form of a graph as one ONNX ModelProto (protobuf-c, from
 * onnx.proto), written atomically. Only the nodes the outputs depend on are written;
 * parameters, buffers and constants become raw_data initializers. Every proto object is
 * allocated from one arena freed at the end, and nothing depends on time or addresses,
 * so the same graph gives the same bytes. */
#include <string.h>

#include "nn/nn_int.h"
#include "onnx.pb-c.h"

#define SW__ONNX_OPSET 13
#define SW__ONNX_OPSET_LAYER_NORM 17 /* LayerNormalization appeared in opset 17 */

/* ---- an arena for the proto objects ------------------------------------------------ */

typedef struct {
  void **blocks;
  size_t n, cap;
  bool failed;
} arena;

static void *arena_alloc(arena *a, size_t size) {
  if (a->failed) return NULL;
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 256;
    void **b = sw_realloc(a->blocks, cap * sizeof *b);
    if (!b) {
      a->failed = true;
      return NULL;
    }
    a->blocks = b;
    a->cap = cap;
  }
  void *p = sw_calloc(1, size ? size : 1);
  if (!p) {
    a->failed = true;
    return NULL;
  }
  a->blocks[a->n++] = p;
  return p;
}

static char *arena_printf(arena *a, const char *fmt, const char *s1, const char *s2) {
  size_t len = strlen(fmt) + strlen(s1) + (s2 ? strlen(s2) : 0) + 1;
  char *p = arena_alloc(a, len);
  if (p) snprintf(p, len, fmt, s1, s2 ? s2 : "");
  return p;
}

static void arena_free(arena *a) {
  for (size_t i = 0; i < a->n; i++) sw_free(a->blocks[i]);
  sw_free(a->blocks);
}

/* ---- building the messages ------------------------------------------------------------ */

typedef struct {
  const sw_graph *g;
  arena ar;
  Onnx__NodeProto **nodes;
  size_t n_nodes, cap_nodes;
  Onnx__TensorProto **inits;
  size_t n_inits, cap_inits;
} exporter;

static int32_t onnx_elem_type(sw_dtype t) {
  switch (t) {
    case SW_DTYPE_F32: return 1;  /* FLOAT */
    case SW_DTYPE_I64: return 7;  /* INT64 */
    case SW_DTYPE_U8: return 2;   /* UINT8 */
  }
  return 0;
}

static bool push(exporter *e, void ***list, size_t *n, size_t *cap, void *item) {
  if (!item) return false;
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 64;
    void **p = arena_alloc(&e->ar, c * sizeof *p);
    if (!p) return false;
    if (*n) memcpy(p, *list, *n * sizeof *p);
    *list = p;
    *cap = c;
  }
  (*list)[(*n)++] = item;
  return true;
}

static Onnx__TensorProto *tensor(exporter *e, const char *name, sw_dtype dtype, int rank, const int64_t *shape,
                                 const void *data) {
  Onnx__TensorProto *t = arena_alloc(&e->ar, sizeof *t);
  int64_t *dims = arena_alloc(&e->ar, (size_t)(rank ? rank : 1) * sizeof *dims);
  if (!t || !dims) return NULL;
  onnx__tensor_proto__init(t);
  t->name = (char *)name;
  t->has_data_type = 1;
  t->data_type = onnx_elem_type(dtype);
  t->n_dims = (size_t)rank;
  t->dims = dims;
  for (int i = 0; i < rank; i++) dims[i] = shape[i];
  t->has_raw_data = 1;
  t->raw_data.len = (size_t)sw__elements(rank, shape) * sw_dtype_size(dtype);
  t->raw_data.data = (uint8_t *)data; /* packed, never written through */
  return t;
}

static bool add_init(exporter *e, Onnx__TensorProto *t) {
  return push(e, (void ***)&e->inits, &e->n_inits, &e->cap_inits, t);
}

/* A scalar f32 initializer, for the constants of decomposed ops. */
static const char *scalar_init(exporter *e, const char *node, const char *what, float v) {
  char *name = arena_printf(&e->ar, "%s.%s", node, what);
  float *data = arena_alloc(&e->ar, sizeof *data);
  if (!name || !data) return NULL;
  *data = v;
  return add_init(e, tensor(e, name, SW_DTYPE_F32, 0, NULL, data)) ? name : NULL;
}

static Onnx__AttributeProto *attr_new(exporter *e, const char *name, Onnx__AttributeProto__AttributeType type) {
  Onnx__AttributeProto *a = arena_alloc(&e->ar, sizeof *a);
  if (!a) return NULL;
  onnx__attribute_proto__init(a);
  a->name = (char *)name;
  a->has_type = 1;
  a->type = type;
  return a;
}

static Onnx__AttributeProto *attr_int(exporter *e, const char *name, int64_t v) {
  Onnx__AttributeProto *a = attr_new(e, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  if (a) {
    a->has_i = 1;
    a->i = v;
  }
  return a;
}

static Onnx__AttributeProto *attr_float(exporter *e, const char *name, float v) {
  Onnx__AttributeProto *a = attr_new(e, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  if (a) {
    a->has_f = 1;
    a->f = v;
  }
  return a;
}

static Onnx__AttributeProto *attr_ints(exporter *e, const char *name, const int64_t *v, int n) {
  Onnx__AttributeProto *a = attr_new(e, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  int64_t *vals = arena_alloc(&e->ar, (size_t)(n ? n : 1) * sizeof *vals);
  if (!a || !vals) return NULL;
  memcpy(vals, v, (size_t)n * sizeof *vals);
  a->n_ints = (size_t)n;
  a->ints = vals;
  return a;
}

/* A node with up to 8 inputs (NULL names: absent; trailing absent ones are dropped). */
static Onnx__NodeProto *node_new(exporter *e, const char *name, const char *op_type, const char *const *inputs,
                                 int n_inputs, const char *output) {
  Onnx__NodeProto *n = arena_alloc(&e->ar, sizeof *n);
  char **in = arena_alloc(&e->ar, (size_t)(n_inputs ? n_inputs : 1) * sizeof *in);
  char **out = arena_alloc(&e->ar, sizeof *out);
  if (!n || !in || !out) return NULL;
  onnx__node_proto__init(n);
  n->name = (char *)name;
  n->op_type = (char *)op_type;
  while (n_inputs > 0 && !inputs[n_inputs - 1]) n_inputs--;
  for (int i = 0; i < n_inputs; i++) in[i] = (char *)(inputs[i] ? inputs[i] : "");
  n->n_input = (size_t)n_inputs;
  n->input = in;
  out[0] = (char *)output;
  n->n_output = 1;
  n->output = out;
  if (!push(e, (void ***)&e->nodes, &e->n_nodes, &e->cap_nodes, n)) return NULL;
  return n;
}

static bool node_attr(exporter *e, Onnx__NodeProto *n, Onnx__AttributeProto *a) {
  if (!n || !a) return false;
  Onnx__AttributeProto **p = arena_alloc(&e->ar, (n->n_attribute + 1) * sizeof *p);
  if (!p) return false;
  if (n->n_attribute) memcpy(p, n->attribute, n->n_attribute * sizeof *p);
  p[n->n_attribute++] = a;
  n->attribute = p;
  return true;
}

/* GELU (erf form) has no operator before opset 20: x * 0.5 * (1 + Erf(x / sqrt(2))). */
static bool export_gelu(exporter *e, const sw__node *node, const char *x) {
  const char *nm = node->name;
  const char *k_s = scalar_init(e, nm, "gelu_sqrt1_2", 0.70710678118654752440f);
  const char *k_one = scalar_init(e, nm, "gelu_one", 1.0f);
  const char *k_half = scalar_init(e, nm, "gelu_half", 0.5f);
  char *t0 = arena_printf(&e->ar, "%s%s", nm, ".gelu_scaled"), *t1 = arena_printf(&e->ar, "%s%s", nm, ".gelu_erf");
  char *t2 = arena_printf(&e->ar, "%s%s", nm, ".gelu_cdf2"), *t3 = arena_printf(&e->ar, "%s%s", nm, ".gelu_xcdf2");
  if (!k_s || !k_one || !k_half || !t0 || !t1 || !t2 || !t3) return false;
  const char *a0[2] = {x, k_s}, *a1[1] = {t0}, *a2[2] = {t1, k_one}, *a3[2] = {x, t2}, *a4[2] = {t3, k_half};
  return node_new(e, t0, "Mul", a0, 2, t0) && node_new(e, t1, "Erf", a1, 1, t1) && node_new(e, t2, "Add", a2, 2, t2) &&
         node_new(e, t3, "Mul", a3, 2, t3) && node_new(e, nm, "Mul", a4, 2, nm);
}

static bool is_leaf(sw_op_type op) { return op == SW_OP_INPUT || op == SW_OP_PARAM || op == SW_OP_CONST; }

static bool is_loss(sw_op_type op) {
  return op == SW_OP_SOFTMAX_CROSS_ENTROPY || op == SW_OP_BCE_WITH_LOGITS || op == SW_OP_MSE;
}

/* One op node as its ONNX operator (or, for GELU, operators). */
static sw_status export_op(exporter *e, const sw__node *node) {
  const sw_graph *g = e->g;
  const sw_op_attrs *at = &node->attrs;
  const char *in[SW__MAX_INPUTS] = {0};
  for (int i = 0; i < node->n_inputs; i++) in[i] = node->inputs[i] >= 0 ? g->nodes[node->inputs[i]].name : NULL;
  const sw__node *x = node->n_inputs > 0 && node->inputs[0] >= 0 ? &g->nodes[node->inputs[0]] : NULL;
  bool ok = true;
  Onnx__NodeProto *n = NULL;
  switch (node->op) {
    case SW_OP_GELU:
      ok = export_gelu(e, node, in[0]);
      break;
    case SW_OP_DROPOUT: /* inference: the identity */
      ok = node_new(e, node->name, "Identity", in, 1, node->name) != NULL;
      break;
    case SW_OP_RESHAPE: {
      /* opset 13 takes the shape as a second input */
      char *sname = arena_printf(&e->ar, "%s%s", node->name, ".shape");
      int64_t rank1[1] = {at->shape_rank};
      int64_t *sdata = arena_alloc(&e->ar, (size_t)(at->shape_rank ? at->shape_rank : 1) * sizeof *sdata);
      if (!sname || !sdata) return sw_error(SW_STATUS_NOMEM, "out of memory");
      memcpy(sdata, at->shape, (size_t)at->shape_rank * sizeof *sdata);
      const char *two[2] = {in[0], sname};
      ok = add_init(e, tensor(e, sname, SW_DTYPE_I64, 1, rank1, sdata)) &&
           node_new(e, node->name, "Reshape", two, 2, node->name) != NULL;
      break;
    }
    default:
      n = node_new(e, node->name, sw_op_onnx_type(node->op), in, node->n_inputs, node->name);
      ok = n != NULL;
      break;
  }
  if (!ok) return sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!n) return SW_STATUS_OK;
  bool one_d = x && x->rank == 3; /* NCW: the [1] entries of the 2-D attributes */
  int sp = one_d ? 1 : 2;
  int64_t kernel[2], stride[2], dil[2], pads[4];
  if (one_d) {
    kernel[0] = at->kernel[1];
    stride[0] = at->stride[1];
    dil[0] = at->dilation[1];
    pads[0] = at->pad[1];
    pads[1] = at->pad[3];
  } else {
    memcpy(kernel, at->kernel, sizeof kernel);
    memcpy(stride, at->stride, sizeof stride);
    memcpy(dil, at->dilation, sizeof dil);
    memcpy(pads, at->pad, sizeof pads);
  }
  switch (node->op) {
    case SW_OP_GEMM:
      ok = node_attr(e, n, attr_float(e, "alpha", at->alpha)) && node_attr(e, n, attr_float(e, "beta", at->beta)) &&
           node_attr(e, n, attr_int(e, "transA", at->trans_a)) && node_attr(e, n, attr_int(e, "transB", at->trans_b));
      break;
    case SW_OP_CONV: {
      const sw__node *w = &g->nodes[node->inputs[1]];
      int64_t ks[2];
      for (int i = 0; i < sp; i++) ks[i] = w->shape[2 + i];
      ok = node_attr(e, n, attr_ints(e, "kernel_shape", ks, sp)) && node_attr(e, n, attr_ints(e, "strides", stride, sp)) &&
           node_attr(e, n, attr_ints(e, "pads", pads, 2 * sp)) && node_attr(e, n, attr_ints(e, "dilations", dil, sp));
      break;
    }
    case SW_OP_MAX_POOL:
    case SW_OP_AVERAGE_POOL:
      ok = node_attr(e, n, attr_ints(e, "kernel_shape", kernel, sp)) &&
           node_attr(e, n, attr_ints(e, "strides", stride, sp)) && node_attr(e, n, attr_ints(e, "pads", pads, 2 * sp));
      if (ok && node->op == SW_OP_MAX_POOL && (dil[0] != 1 || (sp == 2 && dil[1] != 1)))
        ok = node_attr(e, n, attr_ints(e, "dilations", dil, sp));
      if (ok && node->op == SW_OP_AVERAGE_POOL)
        ok = node_attr(e, n, attr_int(e, "count_include_pad", at->count_include_pad));
      break;
    case SW_OP_SOFTMAX:
    case SW_OP_LOG_SOFTMAX:
    case SW_OP_FLATTEN:
    case SW_OP_CONCAT:
    case SW_OP_GATHER:
      ok = node_attr(e, n, attr_int(e, "axis", at->axis));
      break;
    case SW_OP_TRANSPOSE:
      if (at->perm_rank > 0) ok = node_attr(e, n, attr_ints(e, "perm", at->perm, at->perm_rank));
      break;
    case SW_OP_BATCH_NORM:
      ok = node_attr(e, n, attr_float(e, "epsilon", at->epsilon)) &&
           node_attr(e, n, attr_float(e, "momentum", at->momentum));
      break;
    case SW_OP_LAYER_NORM:
      ok = node_attr(e, n, attr_int(e, "axis", at->axis)) && node_attr(e, n, attr_float(e, "epsilon", at->epsilon));
      break;
    case SW_OP_CAST:
      ok = node_attr(e, n, attr_int(e, "to", onnx_elem_type(at->to)));
      break;
    default:
      break;
  }
  return ok ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
}

/* A graph input or output: its type, with the batch dimension symbolic ("N"). */
static Onnx__ValueInfoProto *value_info(exporter *e, const sw__node *node, bool batched) {
  Onnx__ValueInfoProto *v = arena_alloc(&e->ar, sizeof *v);
  Onnx__TypeProto *tp = arena_alloc(&e->ar, sizeof *tp);
  Onnx__TypeProto__Tensor *tt = arena_alloc(&e->ar, sizeof *tt);
  Onnx__TensorShapeProto *sh = arena_alloc(&e->ar, sizeof *sh);
  Onnx__TensorShapeProto__Dimension **dims = arena_alloc(&e->ar, (size_t)(node->rank ? node->rank : 1) * sizeof *dims);
  if (!v || !tp || !tt || !sh || !dims) return NULL;
  onnx__value_info_proto__init(v);
  onnx__type_proto__init(tp);
  onnx__type_proto__tensor__init(tt);
  onnx__tensor_shape_proto__init(sh);
  for (int i = 0; i < node->rank; i++) {
    Onnx__TensorShapeProto__Dimension *d = arena_alloc(&e->ar, sizeof *d);
    if (!d) return NULL;
    onnx__tensor_shape_proto__dimension__init(d);
    if (i == 0 && batched) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = "N";
    } else {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = node->shape[i];
    }
    dims[i] = d;
  }
  sh->n_dim = (size_t)node->rank;
  sh->dim = dims;
  tt->has_elem_type = 1;
  tt->elem_type = onnx_elem_type(node->dtype);
  tt->shape = sh;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  v->name = node->name;
  v->type = tp;
  return v;
}

sw_status sw_onnx_export(const sw_graph *g, const sw_node *outputs, size_t n_outputs, const sw_onnx_meta *meta,
                         size_t n_meta, const char *path) {
  exporter e = {.g = g};
  sw_status st = SW_STATUS_OK;
  uint8_t *buf = NULL;
  bool *keep = NULL;
  if (!n_outputs) return sw_error(SW_STATUS_INVALID, "ONNX export: no outputs");
  for (size_t i = 0; i < n_outputs; i++)
    if (outputs[i] < 0 || (size_t)outputs[i] >= g->n)
      return sw_error(SW_STATUS_INVALID, "ONNX export: output %zu is not a node of the graph", i);
  keep = sw_calloc(g->n ? g->n : 1, sizeof *keep);
  if (!keep) return sw_error(SW_STATUS_NOMEM, "out of memory");
  /* nodes come in topological order: one backward sweep marks what the outputs use */
  for (size_t i = 0; i < n_outputs; i++) keep[outputs[i]] = true;
  bool layer_norm = false;
  for (size_t i = g->n; i-- > 0;) {
    if (!keep[i]) continue;
    const sw__node *node = &g->nodes[i];
    if (is_loss(node->op)) {
      st = sw_error(SW_STATUS_UNSUPPORTED, "ONNX export: node '%s' is a loss (%s), which has no inference form",
                    node->name, sw_op_name(node->op));
      goto out;
    }
    layer_norm |= node->op == SW_OP_LAYER_NORM;
    for (int k = 0; k < node->n_inputs; k++)
      if (node->inputs[k] >= 0) keep[node->inputs[k]] = true;
  }
  Onnx__ValueInfoProto **ins = arena_alloc(&e.ar, g->n * sizeof *ins + 1);
  Onnx__ValueInfoProto **outs = arena_alloc(&e.ar, n_outputs * sizeof *outs);
  size_t n_ins = 0;
  if (!ins || !outs) goto nomem;
  for (size_t i = 0; i < g->n && !st; i++) {
    if (!keep[i]) continue;
    const sw__node *node = &g->nodes[i];
    if (node->op == SW_OP_INPUT) {
      ins[n_ins] = value_info(&e, node, true);
      if (!ins[n_ins++]) goto nomem;
    } else if (node->op == SW_OP_PARAM || node->op == SW_OP_CONST) { /* buffers are PARAM-typed leaves too */
      if (!add_init(&e, tensor(&e, node->name, node->dtype, node->rank, node->shape, node->data))) goto nomem;
    } else if (!is_leaf(node->op)) {
      st = export_op(&e, node);
    }
  }
  if (st) goto out;
  for (size_t i = 0; i < n_outputs; i++) {
    outs[i] = value_info(&e, &g->nodes[outputs[i]], g->nodes[outputs[i]].batched);
    if (!outs[i]) goto nomem;
  }
  Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
  graph.name = "slipway";
  graph.n_node = e.n_nodes;
  graph.node = e.nodes;
  graph.n_initializer = e.n_inits;
  graph.initializer = e.inits;
  graph.n_input = n_ins;
  graph.input = ins;
  graph.n_output = n_outputs;
  graph.output = outs;
  Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsets[1] = {&opset};
  opset.domain = "";
  opset.has_version = 1;
  opset.version = layer_norm ? SW__ONNX_OPSET_LAYER_NORM : SW__ONNX_OPSET;
  Onnx__StringStringEntryProto **props = arena_alloc(&e.ar, (n_meta ? n_meta : 1) * sizeof *props);
  if (!props) goto nomem;
  for (size_t i = 0; i < n_meta; i++) {
    props[i] = arena_alloc(&e.ar, sizeof **props);
    if (!props[i]) goto nomem;
    onnx__string_string_entry_proto__init(props[i]);
    props[i]->key = (char *)meta[i].key;
    props[i]->value = (char *)meta[i].value;
  }
  Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
  model.has_ir_version = 1;
  model.ir_version = layer_norm ? 8 : 7;
  model.n_opset_import = 1;
  model.opset_import = opsets;
  model.producer_name = "slipway";
  model.producer_version = SW_VERSION;
  model.graph = &graph;
  model.n_metadata_props = n_meta;
  model.metadata_props = props;
  size_t len = onnx__model_proto__get_packed_size(&model);
  buf = sw_malloc(len ? len : 1);
  if (!buf) goto nomem;
  onnx__model_proto__pack(&model, buf);
  st = sw_atomic_write(path, buf, len);
  goto out;
nomem:
  st = sw_error(SW_STATUS_NOMEM, "out of memory");
out:
  sw_free(buf);
  sw_free(keep);
  arena_free(&e.ar);
  return st;
}
