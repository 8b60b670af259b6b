/* ONNX export: a graph holding every op kind the exporter maps is written, parsed back
 * with protobuf-c and checked field by field (opset, IR version, inputs with the symbolic
 * batch "N", initializers, op types and attributes, metadata order); the same graph
 * gives the same bytes; losses are left out, and refused as outputs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "onnx.pb-c.h"
#include "slipway/nn.h"

#define OK(x) assert_int_equal((x), SW_STATUS_OK)

typedef struct {
  sw_graph *g;
  sw_node out[3];
  size_t n_out;
  sw_node loss;
} fixture;

static sw_node param(sw_graph *g, const char *name, int rank, const int64_t *shape) {
  sw_node n;
  OK(sw_graph_param(g, name, rank, shape, &n));
  float *d = sw_graph_data(g, n);
  for (int64_t i = 0; i < sw_graph_elements(g, n); i++) d[i] = 0.01f * (float)(i % 17) - 0.05f;
  return n;
}

static sw_node op(sw_graph *g, sw_op_type t, const sw_node *in, int n, const sw_op_attrs *a, const char *name) {
  sw_node out;
  OK(sw_graph_op(g, t, in, n, a, name, &out));
  return out;
}

/* Every mapped op but LayerNormalization (opset 17, tested on its own). */
static void build(fixture *f) {
  memset(f, 0, sizeof *f);
  OK(sw_graph_new(&f->g));
  sw_graph *g = f->g;
  sw_op_attrs a;
  sw_node x, ids, z, label, k;
  int64_t xs[4] = {-1, 1, 8, 8}, is[2] = {-1, 3}, zs[3] = {-1, 2, 10}, ls[1] = {-1}, one[1] = {1};
  OK(sw_graph_input(g, "x", SW_DTYPE_F32, 4, xs, &x));
  OK(sw_graph_input(g, "ids", SW_DTYPE_I64, 2, is, &ids));
  OK(sw_graph_input(g, "z", SW_DTYPE_F32, 3, zs, &z));
  OK(sw_graph_input(g, "label", SW_DTYPE_I64, 1, ls, &label));
  float kv = 0.5f;
  OK(sw_graph_const(g, "k", SW_DTYPE_F32, 1, one, &kv, &k));
  sw_node p[5];
  p[0] = x, p[1] = k;
  sw_node h = op(g, SW_OP_MUL, p, 2, NULL, "scale");
  p[0] = h;
  h = op(g, SW_OP_SUB, p, 2, NULL, "sub");
  p[0] = h;
  h = op(g, SW_OP_ADD, p, 2, NULL, "add");
  p[0] = h;
  h = op(g, SW_OP_DIV, p, 2, NULL, "div");
  /* conv 3x3, pad 1 -> batch norm -> relu -> max pool 2 -> average pool 2 */
  int64_t ws[4] = {4, 1, 3, 3}, cs[1] = {4};
  sw_op_attrs_default(SW_OP_CONV, &a);
  a.pad[0] = a.pad[1] = a.pad[2] = a.pad[3] = 1;
  sw_node c3[3] = {h, param(g, "conv.weight", 4, ws), param(g, "conv.bias", 1, cs)};
  h = op(g, SW_OP_CONV, c3, 3, &a, "conv");
  sw_node mean, var;
  OK(sw_graph_buffer(g, "bn.running_mean", 1, cs, &mean));
  OK(sw_graph_buffer(g, "bn.running_var", 1, cs, &var));
  sw_op_attrs_default(SW_OP_BATCH_NORM, &a);
  a.epsilon = 1e-3f;
  sw_node b5[5] = {h, param(g, "bn.weight", 1, cs), param(g, "bn.bias", 1, cs), mean, var};
  h = op(g, SW_OP_BATCH_NORM, b5, 5, &a, "bn");
  h = op(g, SW_OP_RELU, &h, 1, NULL, "relu");
  sw_op_attrs_default(SW_OP_MAX_POOL, &a);
  a.kernel[0] = a.kernel[1] = a.stride[0] = a.stride[1] = 2;
  h = op(g, SW_OP_MAX_POOL, &h, 1, &a, "maxpool");
  sw_op_attrs_default(SW_OP_AVERAGE_POOL, &a);
  a.kernel[0] = a.kernel[1] = a.stride[0] = a.stride[1] = 2;
  a.count_include_pad = 1;
  h = op(g, SW_OP_AVERAGE_POOL, &h, 1, &a, "avgpool"); /* [N, 4, 2, 2] */
  sw_op_attrs_default(SW_OP_DROPOUT, &a);
  a.ratio = 0.25f;
  h = op(g, SW_OP_DROPOUT, &h, 1, &a, "dropout");
  sw_op_attrs_default(SW_OP_TRANSPOSE, &a);
  a.perm_rank = 4;
  a.perm[0] = 0, a.perm[1] = 1, a.perm[2] = 3, a.perm[3] = 2;
  h = op(g, SW_OP_TRANSPOSE, &h, 1, &a, "transpose");
  sw_op_attrs_default(SW_OP_RESHAPE, &a);
  a.shape_rank = 2;
  a.shape[0] = 0, a.shape[1] = -1;
  h = op(g, SW_OP_RESHAPE, &h, 1, &a, "reshape"); /* [N, 16] */
  h = op(g, SW_OP_SIGMOID, &h, 1, NULL, "sigmoid");
  h = op(g, SW_OP_TANH, &h, 1, NULL, "tanh");
  h = op(g, SW_OP_GELU, &h, 1, NULL, "gelu");
  int64_t gw[2] = {5, 16}, gb[1] = {5};
  sw_op_attrs_default(SW_OP_GEMM, &a);
  a.trans_b = 1;
  a.alpha = 0.5f;
  sw_node g3[3] = {h, param(g, "fc.weight", 2, gw), param(g, "fc.bias", 1, gb)};
  sw_node fc = op(g, SW_OP_GEMM, g3, 3, &a, "fc"); /* [N, 5] */
  /* embedding: Gather then Flatten */
  int64_t ts[2] = {10, 3};
  sw_node g2[2] = {param(g, "emb.weight", 2, ts), ids};
  sw_node e = op(g, SW_OP_GATHER, g2, 2, NULL, "emb");
  e = op(g, SW_OP_FLATTEN, &e, 1, NULL, "emb.flat"); /* [N, 9] */
  sw_op_attrs_default(SW_OP_CONCAT, &a);
  a.axis = 1;
  sw_node cc[2] = {fc, e};
  h = op(g, SW_OP_CONCAT, cc, 2, &a, "concat"); /* [N, 14] */
  int64_t ms[2] = {14, 4};
  sw_node mm[2] = {h, param(g, "mm.weight", 2, ms)};
  sw_node logits = op(g, SW_OP_MATMUL, mm, 2, NULL, "logits");
  f->out[0] = op(g, SW_OP_SOFTMAX, &logits, 1, NULL, "probabilities");
  f->out[1] = op(g, SW_OP_LOG_SOFTMAX, &logits, 1, NULL, "log_probabilities");
  sw_node lp[2] = {logits, label};
  f->loss = op(g, SW_OP_SOFTMAX_CROSS_ENTROPY, lp, 2, NULL, "loss");
  /* 1-D conv (stride 2, pad 1) -> global average pool -> flatten, plus Cast(ids) */
  int64_t w1[3] = {3, 2, 3};
  sw_op_attrs_default(SW_OP_CONV, &a);
  a.stride[1] = 2;
  a.pad[1] = a.pad[3] = 1;
  sw_node c1[3] = {z, param(g, "conv1d.weight", 3, w1), -1};
  h = op(g, SW_OP_CONV, c1, 3, &a, "conv1d");
  h = op(g, SW_OP_GLOBAL_AVERAGE_POOL, &h, 1, NULL, "gap");
  h = op(g, SW_OP_FLATTEN, &h, 1, NULL, "gap.flat"); /* [N, 3] */
  sw_op_attrs_default(SW_OP_CAST, &a);
  a.to = SW_DTYPE_F32;
  sw_node cast = op(g, SW_OP_CAST, &ids, 1, &a, "ids.float");
  sw_node s2[2] = {h, cast};
  f->out[2] = op(g, SW_OP_ADD, s2, 2, NULL, "side");
  f->n_out = 3;
}

static const sw_onnx_meta meta[2] = {{"slipway.model", "t"}, {"a.first", "[\"x\"]"}};

static uint8_t *read_all(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  uint8_t *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
  fclose(fp);
  *len = (size_t)n;
  return buf;
}

static void tmp_path(char *buf, size_t n, const char *tag) {
  snprintf(buf, n, "/tmp/sw-onnx-export-%ld-%s.onnx", (long)getpid(), tag);
}

static const Onnx__NodeProto *find_node(const Onnx__GraphProto *g, const char *name) {
  for (size_t i = 0; i < g->n_node; i++)
    if (!strcmp(g->node[i]->name, name)) return g->node[i];
  fail_msg("no node '%s'", name);
  return NULL;
}

static const Onnx__AttributeProto *find_attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t i = 0; i < n->n_attribute; i++)
    if (!strcmp(n->attribute[i]->name, name)) return n->attribute[i];
  fail_msg("node '%s' has no attribute '%s'", n->name, name);
  return NULL;
}

static const Onnx__TensorProto *find_init(const Onnx__GraphProto *g, const char *name) {
  for (size_t i = 0; i < g->n_initializer; i++)
    if (!strcmp(g->initializer[i]->name, name)) return g->initializer[i];
  return NULL;
}

static void check_ints(const Onnx__NodeProto *n, const char *attr, const int64_t *want, size_t count) {
  const Onnx__AttributeProto *a = find_attr(n, attr);
  assert_int_equal(a->type, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  assert_int_equal(a->n_ints, count);
  for (size_t i = 0; i < count; i++) assert_int_equal(a->ints[i], want[i]);
}

static int64_t attr_i(const Onnx__NodeProto *n, const char *attr) {
  const Onnx__AttributeProto *a = find_attr(n, attr);
  assert_int_equal(a->type, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  return a->i;
}

static void check_input(const Onnx__ValueInfoProto *v, const char *name, int32_t elem, const int64_t *dims, size_t rank) {
  assert_string_equal(v->name, name);
  assert_int_equal(v->type->value_case, ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE);
  const Onnx__TypeProto__Tensor *t = v->type->tensor_type;
  assert_int_equal(t->elem_type, elem);
  assert_int_equal(t->shape->n_dim, rank);
  assert_int_equal(t->shape->dim[0]->value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
  assert_string_equal(t->shape->dim[0]->dim_param, "N");
  for (size_t i = 1; i < rank; i++) {
    assert_int_equal(t->shape->dim[i]->value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE);
    assert_int_equal(t->shape->dim[i]->dim_value, dims[i]);
  }
}

static void test_export_every_op(void **state) {
  (void)state;
  fixture f;
  build(&f);
  char path[128], path2[128];
  tmp_path(path, sizeof path, "a");
  tmp_path(path2, sizeof path2, "b");
  OK(sw_onnx_export(f.g, f.out, f.n_out, meta, 2, path));
  OK(sw_onnx_export(f.g, f.out, f.n_out, meta, 2, path2));
  size_t len, len2;
  uint8_t *buf = read_all(path, &len), *buf2 = read_all(path2, &len2);
  assert_int_equal(len, len2);
  assert_memory_equal(buf, buf2, len); /* the same graph, the same bytes */
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
  assert_non_null(m);
  assert_int_equal(m->ir_version, 7);
  assert_int_equal(m->n_opset_import, 1);
  assert_string_equal(m->opset_import[0]->domain ? m->opset_import[0]->domain : "", "");
  assert_int_equal(m->opset_import[0]->version, 13);
  assert_string_equal(m->producer_name, "slipway");
  assert_true(m->producer_version && m->producer_version[0]);
  assert_int_equal(m->n_metadata_props, 2); /* in the given order */
  assert_string_equal(m->metadata_props[0]->key, "slipway.model");
  assert_string_equal(m->metadata_props[1]->key, "a.first");
  assert_string_equal(m->metadata_props[1]->value, "[\"x\"]");
  const Onnx__GraphProto *g = m->graph;
  /* inputs: the ones the outputs use, in creation order; label (the loss's) is left out */
  assert_int_equal(g->n_input, 3);
  int64_t xd[4] = {0, 1, 8, 8}, id[2] = {0, 3}, zd[3] = {0, 2, 10};
  check_input(g->input[0], "x", 1, xd, 4);
  check_input(g->input[1], "ids", 7, id, 2);
  check_input(g->input[2], "z", 1, zd, 3);
  assert_int_equal(g->n_output, 3);
  int64_t pd[2] = {0, 4}, sd[2] = {0, 3};
  check_input(g->output[0], "probabilities", 1, pd, 2);
  check_input(g->output[1], "log_probabilities", 1, pd, 2);
  check_input(g->output[2], "side", 1, sd, 2);
  /* ops in order: every op once, GELU as its erf form, Dropout as Identity */
  static const char *const want_ops[] = {
      "Mul", "Sub", "Add", "Div", "Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "Identity",
      "Transpose", "Reshape", "Sigmoid", "Tanh", "Mul", "Erf", "Add", "Mul", "Mul", "Gemm", "Gather", "Flatten",
      "Concat", "MatMul", "Softmax", "LogSoftmax", "Conv", "GlobalAveragePool", "Flatten", "Cast", "Add"};
  size_t n_want = sizeof want_ops / sizeof want_ops[0];
  assert_int_equal(g->n_node, n_want);
  for (size_t i = 0; i < n_want; i++) assert_string_equal(g->node[i]->op_type, want_ops[i]);
  for (size_t i = 0; i < g->n_node; i++) {
    assert_int_equal(g->node[i]->n_output, 1);
    assert_string_not_equal(g->node[i]->op_type, "SoftmaxCrossEntropyLoss");
  }
  /* initializers: params, buffers, constants, the Reshape shape; raw little-endian data */
  static const char *const want_inits[] = {"k", "conv.weight", "conv.bias", "bn.running_mean", "bn.running_var",
                                           "bn.weight", "bn.bias", "reshape.shape", "gelu.gelu_sqrt1_2", "gelu.gelu_one",
                                           "gelu.gelu_half", "fc.weight", "fc.bias", "emb.weight", "mm.weight",
                                           "conv1d.weight"};
  for (size_t i = 0; i < sizeof want_inits / sizeof want_inits[0]; i++) {
    if (!find_init(g, want_inits[i])) fail_msg("no initializer '%s'", want_inits[i]);
  }
  const Onnx__TensorProto *t = find_init(g, "conv.weight");
  assert_int_equal(t->data_type, 1);
  assert_int_equal(t->n_dims, 4);
  assert_int_equal(t->dims[0], 4);
  assert_int_equal(t->dims[3], 3);
  assert_true(t->has_raw_data);
  assert_int_equal(t->raw_data.len, 36 * sizeof(float));
  float w1;
  memcpy(&w1, t->raw_data.data + sizeof(float), sizeof w1);
  assert_true(w1 == 0.01f * 1 - 0.05f);
  t = find_init(g, "k");
  float kv;
  memcpy(&kv, t->raw_data.data, sizeof kv);
  assert_true(kv == 0.5f);
  t = find_init(g, "reshape.shape");
  assert_int_equal(t->data_type, 7);
  assert_int_equal(t->n_dims, 1);
  assert_int_equal(t->dims[0], 2);
  int64_t rs[2];
  memcpy(rs, t->raw_data.data, sizeof rs);
  assert_int_equal(rs[0], 0);
  assert_int_equal(rs[1], -1);
  assert_null(find_init(g, "label"));
  /* attributes */
  const Onnx__NodeProto *n = find_node(g, "conv");
  assert_int_equal(n->n_input, 3);
  int64_t k33[2] = {3, 3}, ones[2] = {1, 1}, p1[4] = {1, 1, 1, 1}, two[2] = {2, 2}, zero4[4] = {0, 0, 0, 0};
  check_ints(n, "kernel_shape", k33, 2);
  check_ints(n, "strides", ones, 2);
  check_ints(n, "pads", p1, 4);
  check_ints(n, "dilations", ones, 2);
  n = find_node(g, "conv1d"); /* 1-D: one-element attributes, no bias */
  assert_int_equal(n->n_input, 2);
  int64_t k3[1] = {3}, s2[1] = {2}, p11[2] = {1, 1};
  check_ints(n, "kernel_shape", k3, 1);
  check_ints(n, "strides", s2, 1);
  check_ints(n, "pads", p11, 2);
  check_ints(n, "dilations", ones, 1);
  n = find_node(g, "maxpool");
  check_ints(n, "kernel_shape", two, 2);
  check_ints(n, "strides", two, 2);
  check_ints(n, "pads", zero4, 4);
  n = find_node(g, "avgpool");
  check_ints(n, "kernel_shape", two, 2);
  assert_int_equal(attr_i(n, "count_include_pad"), 1);
  n = find_node(g, "bn");
  assert_int_equal(n->n_input, 5);
  assert_string_equal(n->input[3], "bn.running_mean");
  assert_true(find_attr(n, "epsilon")->f == 1e-3f);
  assert_true(find_attr(n, "momentum")->f == 0.9f);
  n = find_node(g, "dropout");
  assert_string_equal(n->op_type, "Identity");
  assert_int_equal(n->n_attribute, 0);
  n = find_node(g, "transpose");
  int64_t perm[4] = {0, 1, 3, 2};
  check_ints(n, "perm", perm, 4);
  n = find_node(g, "reshape");
  assert_int_equal(n->n_input, 2);
  assert_string_equal(n->input[1], "reshape.shape");
  n = find_node(g, "gelu");
  assert_string_equal(n->op_type, "Mul");
  assert_string_equal(n->output[0], "gelu");
  n = find_node(g, "fc");
  assert_int_equal(attr_i(n, "transB"), 1);
  assert_int_equal(attr_i(n, "transA"), 0);
  assert_true(find_attr(n, "alpha")->f == 0.5f);
  assert_true(find_attr(n, "beta")->f == 1.0f);
  assert_int_equal(attr_i(find_node(g, "emb"), "axis"), 0);
  assert_int_equal(attr_i(find_node(g, "emb.flat"), "axis"), 1);
  assert_int_equal(attr_i(find_node(g, "concat"), "axis"), 1);
  assert_int_equal(attr_i(find_node(g, "probabilities"), "axis"), -1);
  assert_int_equal(attr_i(find_node(g, "log_probabilities"), "axis"), -1);
  assert_int_equal(attr_i(find_node(g, "ids.float"), "to"), 1);
  onnx__model_proto__free_unpacked(m, NULL);
  free(buf);
  free(buf2);
  unlink(path);
  unlink(path2);
  /* a loss as an output is refused, and writes nothing */
  char path3[128];
  tmp_path(path3, sizeof path3, "c");
  assert_int_equal(sw_onnx_export(f.g, &f.loss, 1, NULL, 0, path3), SW_STATUS_UNSUPPORTED);
  assert_non_null(strstr(sw_last_error(), "loss"));
  assert_int_not_equal(access(path3, F_OK), 0);
  sw_node bad = 100000;
  assert_int_equal(sw_onnx_export(f.g, &bad, 1, NULL, 0, path3), SW_STATUS_INVALID);
  sw_graph_free(f.g);
}

/* LayerNormalization exists from opset 17: a graph with one exports opset 17, IR 8. */
static void test_layer_norm_opset17(void **state) {
  (void)state;
  sw_graph *g;
  OK(sw_graph_new(&g));
  sw_node x, y;
  int64_t xs[2] = {-1, 6}, ds[1] = {6};
  OK(sw_graph_input(g, "x", SW_DTYPE_F32, 2, xs, &x));
  sw_op_attrs a;
  sw_op_attrs_default(SW_OP_LAYER_NORM, &a);
  a.epsilon = 1e-6f;
  sw_node in3[3] = {x, param(g, "ln.weight", 1, ds), param(g, "ln.bias", 1, ds)};
  OK(sw_graph_op(g, SW_OP_LAYER_NORM, in3, 3, &a, "ln", &y));
  char path[128];
  tmp_path(path, sizeof path, "ln");
  OK(sw_onnx_export(g, &y, 1, NULL, 0, path));
  size_t len;
  uint8_t *buf = read_all(path, &len);
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
  assert_non_null(m);
  assert_int_equal(m->ir_version, 8);
  assert_int_equal(m->opset_import[0]->version, 17);
  assert_int_equal(m->n_metadata_props, 0);
  const Onnx__NodeProto *n = find_node(m->graph, "ln");
  assert_string_equal(n->op_type, "LayerNormalization");
  assert_int_equal(attr_i(n, "axis"), -1);
  assert_true(find_attr(n, "epsilon")->f == 1e-6f);
  onnx__model_proto__free_unpacked(m, NULL);
  free(buf);
  unlink(path);
  sw_graph_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_export_every_op),
      cmocka_unit_test(test_layer_norm_opset17),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
