/* ONNX import (src/nn/onnx_import.c) on ModelProtos built here with protobuf-c: the
 * ops and their shapes and values, Constant/Identity/Reshape with an initializer shape,
 * the Shape/Gather/Unsqueeze/Concat reshape pattern folded at import, initializers in
 * raw_data and in typed fields, and the refusals: unsupported ops and attributes (named
 * with their node), external data, malformed files, without leaking. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"
#include "slipway/nn.h"

/* Every allocation of a test's protobufs, freed together. */
static void *arena[1024];
static int arena_n;

static void *al(size_t n) {
  void *p = calloc(1, n ? n : 1);
  assert_non_null(p);
  assert_true(arena_n < 1024);
  arena[arena_n++] = p;
  return p;
}

static void arena_free(void) {
  while (arena_n > 0) free(arena[--arena_n]);
}

static Onnx__TensorProto *tensor(const char *name, int rank, const int64_t *dims, int type, const void *v, bool raw) {
  Onnx__TensorProto *t = al(sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = (char *)name;
  t->n_dims = (size_t)rank;
  t->dims = al(sizeof(int64_t) * (size_t)(rank ? rank : 1));
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= (t->dims[i] = dims[i]);
  t->has_data_type = 1;
  t->data_type = type;
  size_t es = type == 1 ? 4 : 8;
  if (raw) {
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)n * es;
    t->raw_data.data = al(t->raw_data.len);
    memcpy(t->raw_data.data, v, t->raw_data.len);
  } else if (type == 1) {
    t->n_float_data = (size_t)n;
    t->float_data = al((size_t)n * 4);
    memcpy(t->float_data, v, (size_t)n * 4);
  } else {
    t->n_int64_data = (size_t)n;
    t->int64_data = al((size_t)n * 8);
    memcpy(t->int64_data, v, (size_t)n * 8);
  }
  return t;
}

static Onnx__AttributeProto *attr_new(Onnx__NodeProto *nd, const char *name) {
  Onnx__AttributeProto *a = al(sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = (char *)name;
  Onnx__AttributeProto **v = al(sizeof *v * (nd->n_attribute + 1));
  if (nd->n_attribute) memcpy(v, nd->attribute, sizeof *v * nd->n_attribute);
  v[nd->n_attribute++] = a;
  nd->attribute = v;
  return a;
}

static void attr_i(Onnx__NodeProto *nd, const char *name, int64_t i) {
  Onnx__AttributeProto *a = attr_new(nd, name);
  a->has_type = 1;
  a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
  a->has_i = 1;
  a->i = i;
}

static void attr_t(Onnx__NodeProto *nd, const char *name, Onnx__TensorProto *t) {
  Onnx__AttributeProto *a = attr_new(nd, name);
  a->has_type = 1;
  a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
  a->t = t;
}

typedef struct {
  Onnx__ModelProto m;
  Onnx__GraphProto g;
  Onnx__OperatorSetIdProto opset, *opsets[1];
  Onnx__NodeProto *nodes[32];
  Onnx__TensorProto *inits[32];
  Onnx__ValueInfoProto *ins[8], *outs[8];
} model;

static void model_init(model *md) {
  memset(md, 0, sizeof *md);
  onnx__model_proto__init(&md->m);
  onnx__graph_proto__init(&md->g);
  onnx__operator_set_id_proto__init(&md->opset);
  md->opset.has_version = 1;
  md->opset.version = 13;
  md->opsets[0] = &md->opset;
  md->m.has_ir_version = 1;
  md->m.ir_version = 7;
  md->m.n_opset_import = 1;
  md->m.opset_import = md->opsets;
  md->m.graph = &md->g;
  md->g.name = "test";
  md->g.node = md->nodes;
  md->g.initializer = md->inits;
  md->g.input = md->ins;
  md->g.output = md->outs;
}

static Onnx__NodeProto *node(model *md, const char *op, const char *name, const char *in0, const char *in1, const char *out) {
  Onnx__NodeProto *nd = al(sizeof *nd);
  onnx__node_proto__init(nd);
  nd->op_type = (char *)op;
  nd->name = (char *)name;
  nd->input = al(3 * sizeof(char *)); /* room for a third, added by the caller */
  if (in0) nd->input[nd->n_input++] = (char *)in0;
  if (in1) nd->input[nd->n_input++] = (char *)in1;
  nd->output = al(sizeof(char *));
  nd->output[0] = (char *)out;
  nd->n_output = 1;
  md->nodes[md->g.n_node++] = nd;
  return nd;
}

static Onnx__ValueInfoProto *vinfo(const char *name, int type, int rank, const int64_t *dims) {
  Onnx__ValueInfoProto *v = al(sizeof *v);
  onnx__value_info_proto__init(v);
  v->name = (char *)name;
  Onnx__TypeProto *tp = al(sizeof *tp);
  onnx__type_proto__init(tp);
  Onnx__TypeProto__Tensor *tt = al(sizeof *tt);
  onnx__type_proto__tensor__init(tt);
  tt->has_elem_type = 1;
  tt->elem_type = type;
  Onnx__TensorShapeProto *sh = al(sizeof *sh);
  onnx__tensor_shape_proto__init(sh);
  sh->n_dim = (size_t)rank;
  sh->dim = al(sizeof *sh->dim * (size_t)(rank ? rank : 1));
  for (int i = 0; i < rank; i++) {
    Onnx__TensorShapeProto__Dimension *d = al(sizeof *d);
    onnx__tensor_shape_proto__dimension__init(d);
    if (dims[i] < 0) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = "N";
    } else {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = dims[i];
    }
    sh->dim[i] = d;
  }
  tt->shape = sh;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  v->type = tp;
  return v;
}

static void add_input(model *md, const char *name, int rank, const int64_t *dims) {
  md->ins[md->g.n_input++] = vinfo(name, 1, rank, dims);
}

static void add_output(model *md, const char *name) { md->outs[md->g.n_output++] = vinfo(name, 1, 0, NULL); }

static void add_init(model *md, Onnx__TensorProto *t) { md->inits[md->g.n_initializer++] = t; }

static sw_status import(model *md, sw_graph **g, sw_node **outs, size_t *n_outs, json_t **meta) {
  size_t len = onnx__model_proto__get_packed_size(&md->m);
  uint8_t *buf = al(len);
  onnx__model_proto__pack(&md->m, buf);
  return sw_onnx_import_mem(buf, len, "test.onnx", g, outs, n_outs, meta);
}

static void run_batch(sw_graph *g, int64_t n) {
  assert_int_equal(sw_graph_alloc(g, 4), SW_STATUS_OK);
  assert_int_equal(sw_graph_set_batch(g, n), SW_STATUS_OK);
  sw_graph_set_training(g, false);
}

/* x [N, 3] -> Gemm(W raw_data, b float_data, transB) -> Relu */
static void test_gemm_relu(void **state) {
  (void)state;
  long live = sw_alloc_live();
  model md;
  model_init(&md);
  int64_t xd[2] = {-1, 3}, wd[2] = {2, 3}, bd[1] = {2};
  float w[6] = {1, 2, 3, -1, -2, -3}, b[2] = {0.5f, 0.25f};
  add_input(&md, "x", 2, xd);
  add_init(&md, tensor("W", 2, wd, 1, w, true));
  add_init(&md, tensor("b", 1, bd, 1, b, false));
  Onnx__NodeProto *gm = node(&md, "Gemm", "fc", "x", "W", "h");
  gm->input[gm->n_input++] = "b";
  attr_i(gm, "transB", 1);
  node(&md, "Relu", "act", "h", NULL, "y");
  add_output(&md, "y");
  sw_graph *g;
  sw_node *outs;
  size_t n;
  assert_int_equal(import(&md, &g, &outs, &n, NULL), SW_STATUS_OK);
  assert_int_equal(n, 1);
  assert_int_equal(sw_graph_op_type(g, outs[0]), SW_OP_RELU);
  assert_int_equal(sw_graph_op_type(g, sw_graph_find(g, "h")), SW_OP_GEMM);
  run_batch(g, 2);
  float *x = sw_graph_data(g, sw_graph_find(g, "x"));
  float xv[6] = {1, 1, 1, 1, 0, -1};
  memcpy(x, xv, sizeof xv);
  assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
  assert_int_equal(sw_graph_rank(g, outs[0]), 2);
  assert_int_equal(sw_graph_shape(g, outs[0])[0], 2);
  assert_int_equal(sw_graph_shape(g, outs[0])[1], 2);
  const float *y = sw_graph_data(g, outs[0]);
  float want[4] = {6.5f, 0, 0, 2.25f};
  for (int i = 0; i < 4; i++) assert_float_equal(y[i], want[i], 1e-6);
  sw_free(outs);
  sw_graph_free(g);
  arena_free();
  assert_int_equal(sw_alloc_live(), live);
}

/* Constant (a float scalar) * x, Identity, Reshape by an int64_data initializer [0, 6]. */
static void test_constant_identity_reshape(void **state) {
  (void)state;
  long live = sw_alloc_live();
  model md;
  model_init(&md);
  int64_t xd[3] = {-1, 2, 3}, sd[1] = {2}, target[2] = {0, 6};
  float two = 2;
  add_input(&md, "x", 3, xd);
  add_init(&md, tensor("target", 1, sd, 7, target, false));
  Onnx__NodeProto *c = node(&md, "Constant", "two", NULL, NULL, "c2");
  attr_t(c, "value", tensor("", 0, NULL, 1, &two, true));
  node(&md, "Mul", "scale", "x", "c2", "x2");
  node(&md, "Identity", "same", "x2", NULL, "x2b");
  node(&md, "Reshape", "flat", "x2b", "target", "y");
  add_output(&md, "y");
  sw_graph *g;
  sw_node *outs;
  size_t n;
  json_t *meta = NULL;
  assert_int_equal(import(&md, &g, &outs, &n, &meta), SW_STATUS_OK);
  assert_null(meta);
  assert_int_equal(sw_graph_op_type(g, outs[0]), SW_OP_RESHAPE);
  run_batch(g, 3);
  float *x = sw_graph_data(g, sw_graph_find(g, "x"));
  for (int i = 0; i < 18; i++) x[i] = (float)i;
  assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
  assert_int_equal(sw_graph_shape(g, outs[0])[0], 3);
  assert_int_equal(sw_graph_shape(g, outs[0])[1], 6);
  const float *y = sw_graph_data(g, outs[0]);
  for (int i = 0; i < 18; i++) assert_float_equal(y[i], 2.0f * (float)i, 0);
  sw_free(outs);
  sw_graph_free(g);
  arena_free();
  assert_int_equal(sw_alloc_live(), live);
}

/* x.view(x.size(0), -1) as torch exports it: Shape, Gather, Unsqueeze, Concat, Reshape. */
static void test_shape_pattern_folds(void **state) {
  (void)state;
  long live = sw_alloc_live();
  model md;
  model_init(&md);
  int64_t xd[4] = {-1, 2, 2, 2}, one[1] = {1}, zero = 0, minus1 = -1;
  add_input(&md, "x", 4, xd);
  add_init(&md, tensor("i0", 0, NULL, 7, &zero, true));
  add_init(&md, tensor("ax", 1, one, 7, &zero, true));
  add_init(&md, tensor("m1", 1, one, 7, &minus1, false));
  node(&md, "Shape", "shape", "x", NULL, "s");
  node(&md, "Gather", "batch", "s", "i0", "b");
  node(&md, "Unsqueeze", "unsq", "b", "ax", "b1");
  node(&md, "Concat", "cat", "b1", "m1", "target");
  attr_i(md.nodes[md.g.n_node - 1], "axis", 0);
  node(&md, "Reshape", "view", "x", "target", "y");
  add_output(&md, "y");
  sw_graph *g;
  sw_node *outs;
  size_t n;
  assert_int_equal(import(&md, &g, &outs, &n, NULL), SW_STATUS_OK);
  /* folded: only the input and the reshape are in the graph */
  assert_int_equal(sw_graph_size(g), 2);
  run_batch(g, 3);
  assert_int_equal(sw_graph_shape(g, outs[0])[0], 3);
  assert_int_equal(sw_graph_shape(g, outs[0])[1], 8);
  sw_free(outs);
  sw_graph_free(g);
  arena_free();
  assert_int_equal(sw_alloc_live(), live);
}

static void expect_error(model *md, sw_status want, const char *const *words) {
  long live = sw_alloc_live();
  sw_graph *g = (sw_graph *)1;
  sw_node *outs = (sw_node *)1;
  size_t n = 7;
  sw_status st = import(md, &g, &outs, &n, NULL);
  assert_int_equal(st, want);
  assert_null(g);
  assert_null(outs);
  assert_int_equal(n, 0);
  for (size_t i = 0; words[i]; i++) {
    if (!strstr(sw_last_error(), words[i])) fail_msg("'%s' lacks '%s'", sw_last_error(), words[i]);
  }
  assert_int_equal(sw_alloc_live(), live);
}

static void test_unsupported_op_and_attribute(void **state) {
  (void)state;
  model md;
  model_init(&md);
  int64_t xd[2] = {-1, 3};
  add_input(&md, "x", 2, xd);
  node(&md, "Relu", "r", "x", NULL, "h");
  node(&md, "Erf", "my_erf", "h", NULL, "y");
  add_output(&md, "y");
  expect_error(&md, SW_STATUS_UNSUPPORTED, (const char *const[]){"Erf", "my_erf", "unsupported operator", NULL});
  arena_free();

  model_init(&md);
  add_input(&md, "x", 2, xd);
  Onnx__NodeProto *s = node(&md, "Softmax", "sm", "x", NULL, "y");
  attr_i(s, "axis", -1);
  attr_i(s, "bogus", 3);
  add_output(&md, "y");
  expect_error(&md, SW_STATUS_UNSUPPORTED, (const char *const[]){"bogus", "sm", "Softmax", NULL});
  arena_free();
}

static void test_external_data_refused(void **state) {
  (void)state;
  model md;
  model_init(&md);
  int64_t xd[2] = {-1, 2}, wd[2] = {2, 2};
  float w[4] = {1, 0, 0, 1};
  add_input(&md, "x", 2, xd);
  Onnx__TensorProto *t = tensor("W", 2, wd, 1, w, true);
  t->has_data_location = 1;
  t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  add_init(&md, t);
  node(&md, "MatMul", "mm", "x", "W", "y");
  add_output(&md, "y");
  expect_error(&md, SW_STATUS_UNSUPPORTED, (const char *const[]){"external data", "W", NULL});
  arena_free();
}

static void test_malformed(void **state) {
  (void)state;
  model md;
  int64_t xd[2] = {-1, 2}, wd[2] = {2, 2}, huge[2] = {1 << 30, 1 << 30};
  float w[4] = {1, 0, 0, 1};
  /* an input used before it is defined (a cycle) */
  model_init(&md);
  add_input(&md, "x", 2, xd);
  node(&md, "Relu", "a", "b_out", NULL, "a_out");
  node(&md, "Relu", "b", "a_out", NULL, "b_out");
  add_output(&md, "b_out");
  expect_error(&md, SW_STATUS_FORMAT, (const char *const[]){"b_out", "'a'", NULL});
  arena_free();
  /* raw_data of the wrong size */
  model_init(&md);
  add_input(&md, "x", 2, xd);
  Onnx__TensorProto *t = tensor("W", 2, wd, 1, w, true);
  t->raw_data.len = 12;
  add_init(&md, t);
  node(&md, "MatMul", "mm", "x", "W", "y");
  add_output(&md, "y");
  expect_error(&md, SW_STATUS_FORMAT, (const char *const[]){"W", NULL});
  arena_free();
  /* a huge declared size with no data behind it */
  model_init(&md);
  add_input(&md, "x", 2, xd);
  t = tensor("W", 0, NULL, 1, w, false);
  t->n_dims = 2;
  t->dims = huge;
  add_init(&md, t);
  node(&md, "MatMul", "mm", "x", "W", "y");
  add_output(&md, "y");
  expect_error(&md, SW_STATUS_FORMAT, (const char *const[]){"W", NULL});
  arena_free();
  /* a constant index out of range */
  model_init(&md);
  int64_t five = 5;
  add_input(&md, "x", 2, xd);
  add_init(&md, tensor("i", 0, NULL, 7, &five, false));
  node(&md, "Shape", "s", "x", NULL, "sh");
  node(&md, "Gather", "g", "sh", "i", "y");
  add_output(&md, "y");
  expect_error(&md, SW_STATUS_FORMAT, (const char *const[]){"index out of range", NULL});
  arena_free();
  /* truncated bytes */
  model_init(&md);
  add_input(&md, "x", 2, xd);
  add_init(&md, tensor("W", 2, wd, 1, w, true));
  node(&md, "MatMul", "mm", "x", "W", "y");
  add_output(&md, "y");
  size_t len = onnx__model_proto__get_packed_size(&md.m);
  uint8_t *buf = al(len);
  onnx__model_proto__pack(&md.m, buf);
  long live = sw_alloc_live();
  for (size_t cut = 1; cut < len; cut += 7) {
    sw_graph *g;
    sw_node *outs;
    size_t n;
    sw_status st = sw_onnx_import_mem(buf, cut, "cut.onnx", &g, &outs, &n, NULL);
    assert_int_not_equal(st, SW_STATUS_OK);
    assert_null(g);
  }
  assert_int_equal(sw_alloc_live(), live);
  arena_free();
}

static void test_metadata(void **state) {
  (void)state;
  model md;
  model_init(&md);
  int64_t xd[2] = {-1, 2};
  add_input(&md, "x", 2, xd);
  node(&md, "Sigmoid", "s", "x", NULL, "y");
  add_output(&md, "y");
  Onnx__StringStringEntryProto e, *ep[1] = {&e};
  onnx__string_string_entry_proto__init(&e);
  e.key = "slipway.input_features";
  e.value = "image";
  md.m.n_metadata_props = 1;
  md.m.metadata_props = ep;
  sw_graph *g;
  sw_node *outs;
  size_t n;
  json_t *meta;
  assert_int_equal(import(&md, &g, &outs, &n, &meta), SW_STATUS_OK);
  assert_string_equal(json_string_value(json_object_get(meta, "slipway.input_features")), "image");
  json_decref(meta);
  sw_free(outs);
  sw_graph_free(g);
  arena_free();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gemm_relu),
      cmocka_unit_test(test_constant_identity_reshape),
      cmocka_unit_test(test_shape_pattern_folds),
      cmocka_unit_test(test_unsupported_op_and_attribute),
      cmocka_unit_test(test_external_data_refused),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_metadata),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
