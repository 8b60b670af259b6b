/* Model files: a YAML description of inputs, layers, loss and optimizer, checked when
 * loaded, and turned into a graph whose first nodes are the dataset's transform (so
 * the model takes raw features, DESIGN.md) and whose parameters start from the
 * counter-based RNG. Also the model's parameters on disk (safetensors) and their hash. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/train.h"

/* ---- the model file -------------------------------------------------------------- */

static sw_status bad(const char *file, const char *fmt, const char *what) {
  return sw_error(SW_STATUS_INVALID, "%s: %s%s", file, fmt, what ? what : "");
}

static bool get_int(const json_t *o, const char *key, int64_t dflt, int64_t *out) {
  const json_t *v = json_object_get(o, key);
  if (!v) {
    *out = dflt;
    return true;
  }
  if (!json_is_integer(v)) return false;
  *out = json_integer_value(v);
  return true;
}

static bool get_num(const json_t *o, const char *key, double dflt, double *out) {
  const json_t *v = json_object_get(o, key);
  if (!v) {
    *out = dflt;
    return true;
  }
  if (!json_is_number(v)) return false;
  *out = json_number_value(v);
  return true;
}

static sw_status load_input(const json_t *j, const char *file, sw_model_input *in) {
  if (!json_is_object(j)) return bad(file, "an input is a mapping with feature and shape", NULL);
  const char *feature = json_string_value(json_object_get(j, "feature"));
  const char *name = json_string_value(json_object_get(j, "name"));
  if (!feature) return bad(file, "an input needs a feature", NULL);
  in->feature = sw_strdup(feature);
  in->name = sw_strdup(name ? name : feature);
  if (!in->feature || !in->name) return sw_error(SW_STATUS_NOMEM, "out of memory");
  const json_t *shape = json_object_get(j, "shape");
  if (shape && (!json_is_array(shape) || json_array_size(shape) > SW_NN_MAX_RANK - 1))
    return bad(file, "input shape must be a list of sizes, without the batch: ", feature);
  in->rank = (int)json_array_size(shape);
  for (int i = 0; i < in->rank; i++) {
    const json_t *d = json_array_get(shape, (size_t)i);
    if (!json_is_integer(d) || json_integer_value(d) < 1) return bad(file, "input shape sizes must be >= 1: ", feature);
    in->shape[i] = json_integer_value(d);
  }
  return SW_STATUS_OK;
}

static const char *const layer_types[] = {"dense", "conv2d", "conv1d", "max_pool", "avg_pool", "global_avg_pool",
                                          "flatten", "dropout", "batch_norm", "layer_norm", "embedding", "concat",
                                          "activation", "reshape", NULL};

static sw_status check_layers(const json_t *layers, const char *file) {
  if (!json_is_array(layers) || json_array_size(layers) == 0) return bad(file, "layers must be a non-empty list", NULL);
  size_t i;
  const json_t *l;
  json_array_foreach(layers, i, l) {
    const char *type = json_string_value(json_object_get(l, "type"));
    if (!type) return sw_error(SW_STATUS_INVALID, "%s: layer %zu has no type", file, i + 1);
    bool known = false;
    for (int k = 0; layer_types[k]; k++) known |= !strcmp(type, layer_types[k]);
    if (!known) return sw_error(SW_STATUS_INVALID, "%s: layer %zu: unknown type '%s'", file, i + 1, type);
  }
  return SW_STATUS_OK;
}

sw_status sw_model_spec_from_json(const json_t *doc, const char *file, sw_model_spec **out) {
  *out = NULL;
  if (!json_is_object(doc)) return bad(file, "a model file is a mapping", NULL);
  sw_model_spec *s = sw_calloc(1, sizeof *s);
  if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = SW_STATUS_OK;
  s->doc = json_deep_copy(doc);
  const char *name = json_string_value(json_object_get(doc, "name"));
  s->name = sw_strdup(name ? name : "model");
  const json_t *input = json_object_get(doc, "input"), *inputs = json_object_get(doc, "inputs");
  if (input && inputs) {
    st = bad(file, "give input or inputs, not both", NULL);
    goto out;
  }
  if (input) {
    s->n_inputs = 1;
    st = load_input(input, file, &s->inputs[0]);
  } else if (json_is_array(inputs) && json_array_size(inputs) > 0 && json_array_size(inputs) <= SW_MODEL_MAX_INPUTS) {
    for (size_t i = 0; i < json_array_size(inputs) && !st; i++) {
      s->n_inputs = i + 1;
      st = load_input(json_array_get(inputs, i), file, &s->inputs[i]);
    }
  } else {
    st = bad(file, "needs an input (or a list of up to 8 inputs)", NULL);
  }
  if (st) goto out;
  const char *label = json_string_value(json_object_get(doc, "label"));
  s->label = sw_strdup(label ? label : "label");
  s->layers = json_incref(json_object_get(doc, "layers"));
  st = check_layers(s->layers, file);
  if (st) goto out;
  const char *loss = json_string_value(json_object_get(doc, "loss"));
  if (!loss || !strcmp(loss, "softmax_cross_entropy")) s->loss = SW_LOSS_SOFTMAX_CE;
  else if (!strcmp(loss, "bce_with_logits")) s->loss = SW_LOSS_BCE_WITH_LOGITS;
  else if (!strcmp(loss, "mse")) s->loss = SW_LOSS_MSE;
  else {
    st = bad(file, "loss must be softmax_cross_entropy, bce_with_logits or mse, not ", loss);
    goto out;
  }
  /* optimizer */
  const json_t *opt = json_object_get(doc, "optimizer");
  const char *otype = json_string_value(json_object_get(opt, "type"));
  if (!otype || !strcmp(otype, "adam")) s->optim.kind = SW_OPTIM_ADAM;
  else if (!strcmp(otype, "adamw")) s->optim.kind = SW_OPTIM_ADAMW;
  else if (!strcmp(otype, "sgd")) s->optim.kind = SW_OPTIM_SGD;
  else {
    st = bad(file, "optimizer type must be sgd, adam or adamw, not ", otype);
    goto out;
  }
  double lr, mom, b1, b2, eps, wd, clip;
  const json_t *nest = json_object_get(opt, "nesterov");
  if (!get_num(opt, "lr", s->optim.kind == SW_OPTIM_SGD ? 0.01 : 0.001, &lr) || !get_num(opt, "momentum", 0, &mom) ||
      !get_num(opt, "beta1", 0.9, &b1) || !get_num(opt, "beta2", 0.999, &b2) || !get_num(opt, "eps", 1e-8, &eps) ||
      !get_num(opt, "weight_decay", s->optim.kind == SW_OPTIM_ADAMW ? 0.01 : 0, &wd) ||
      !get_num(opt, "clip_norm", 0, &clip) || (nest && !json_is_boolean(nest)) || !(lr > 0) || mom < 0 || wd < 0 ||
      clip < 0) {
    st = bad(file, "optimizer: lr, momentum, beta1, beta2, eps, weight_decay, clip_norm are numbers (lr > 0)", NULL);
    goto out;
  }
  s->optim.momentum = (float)mom;
  s->optim.nesterov = json_is_true(nest);
  s->optim.beta1 = (float)b1;
  s->optim.beta2 = (float)b2;
  s->optim.eps = (float)eps;
  s->optim.weight_decay = (float)wd;
  s->clip_norm = clip;
  /* schedule */
  const json_t *sch = json_object_get(doc, "schedule");
  const char *stype = json_string_value(json_object_get(sch, "type"));
  s->schedule.base_lr = (float)lr;
  if (!stype || !strcmp(stype, "constant")) s->schedule.kind = SW_LR_CONSTANT;
  else if (!strcmp(stype, "step")) s->schedule.kind = SW_LR_STEP;
  else if (!strcmp(stype, "cosine")) s->schedule.kind = SW_LR_COSINE;
  else {
    st = bad(file, "schedule type must be constant, step or cosine, not ", stype);
    goto out;
  }
  double gamma, min_lr;
  if (!get_int(sch, "warmup_steps", 0, &s->schedule.warmup_steps) || !get_int(sch, "step_size", 1000, &s->schedule.step_size) ||
      !get_num(sch, "gamma", 0.1, &gamma) || !get_num(sch, "min_lr", 0, &min_lr) ||
      !get_int(sch, "total_steps", 0, &s->schedule.total_steps) || s->schedule.warmup_steps < 0) {
    st = bad(file, "schedule: warmup_steps, step_size, total_steps are integers; gamma, min_lr numbers", NULL);
    goto out;
  }
  s->schedule.gamma = (float)gamma;
  s->schedule.min_lr = (float)min_lr;
  int64_t seed;
  if (!get_int(doc, "batch_size", 64, &s->batch_size) || !get_int(doc, "epochs", 0, &s->epochs) ||
      !get_int(doc, "steps", 0, &s->steps) || !get_int(doc, "seed", 0, &seed) || s->batch_size < 1 || s->epochs < 0 ||
      s->steps < 0 || seed < 0) {
    st = bad(file, "batch_size (>= 1), epochs, steps and seed (>= 0) are integers", NULL);
    goto out;
  }
  if (!s->epochs && !s->steps) s->epochs = 1;
  s->seed = (uint64_t)seed;
  const json_t *shuffle = json_object_get(doc, "shuffle");
  if (shuffle && !json_is_boolean(shuffle)) {
    st = bad(file, "shuffle is true or false", NULL);
    goto out;
  }
  s->shuffle = !shuffle || json_is_true(shuffle);
  const char *init = json_string_value(json_object_get(doc, "init_from"));
  if (json_object_get(doc, "init_from") && !init) {
    st = bad(file, "init_from is a path", NULL);
    goto out;
  }
  if (init) {
    char *dir = sw_path_dirname(file);
    s->init_from = init[0] == '/' || !dir ? sw_strdup(init) : sw_path_join(dir, init);
    sw_free(dir);
    if (!s->init_from) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
  }
out:
  if (st) {
    sw_model_spec_free(s);
    return st;
  }
  *out = s;
  return SW_STATUS_OK;
}

sw_status sw_model_spec_load(const char *path, sw_model_spec **out) {
  json_t *doc = NULL;
  sw_status st = sw_yaml_load_file(path, &doc);
  if (st) return st;
  st = sw_model_spec_from_json(doc, path, out);
  json_decref(doc);
  return st;
}

void sw_model_spec_free(sw_model_spec *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n_inputs; i++) {
    sw_free(s->inputs[i].name);
    sw_free(s->inputs[i].feature);
  }
  sw_free(s->name);
  sw_free(s->label);
  sw_free(s->init_from);
  json_decref(s->layers);
  json_decref(s->doc);
  sw_free(s);
}

/* ---- building the graph ------------------------------------------------------------ */

typedef struct {
  const sw_model_spec *spec;
  sw_model *m;
  sw_graph *g;
  json_t *named; /* layer or input name -> node id */
  int param_index;
  char err_ctx[64];
} builder;

static sw_status op(builder *b, sw_op_type t, const sw_node *in, int n, const sw_op_attrs *a, const char *name,
                    sw_node *out) {
  sw_status st = sw_graph_op(b->g, t, in, n, a, name, out);
  if (st) return sw_error_prefix(st, "%s: ", b->err_ctx);
  return SW_STATUS_OK;
}

/* A parameter named PREFIX.SUFFIX, initialized from (seed, its index). */
static sw_status param(builder *b, const char *prefix, const char *suffix, int rank, const int64_t *shape,
                       sw_init_kind init, int64_t fan_in, int64_t fan_out, sw_node *out) {
  char name[160];
  snprintf(name, sizeof name, "%s.%s", prefix, suffix);
  sw_status st = sw_graph_param(b->g, name, rank, shape, out);
  if (st) return st;
  sw_rng r;
  sw_rng_init(&r, b->spec->seed, 0x50000000u + (uint64_t)b->param_index++);
  sw_init_fill(&r, init, sw_graph_data(b->g, *out), (size_t)sw_graph_elements(b->g, *out), fan_in, fan_out);
  return SW_STATUS_OK;
}

/* A one-value constant named after the node that uses it ("image.scale" -> "image.scale.k"). */
static sw_status scalar_const(builder *b, const char *user, float v, sw_node *out) {
  int64_t shape[1] = {1};
  char name[192];
  snprintf(name, sizeof name, "%s.k", user);
  return sw_graph_const(b->g, name, SW_DTYPE_F32, 1, shape, &v, out);
}

static sw_status activation(builder *b, const char *act, const char *lname, sw_node x, sw_node *out) {
  *out = x;
  if (!act || !strcmp(act, "none") || !strcmp(act, "linear")) return SW_STATUS_OK;
  sw_op_type t;
  if (!strcmp(act, "relu")) t = SW_OP_RELU;
  else if (!strcmp(act, "sigmoid")) t = SW_OP_SIGMOID;
  else if (!strcmp(act, "tanh")) t = SW_OP_TANH;
  else if (!strcmp(act, "gelu")) t = SW_OP_GELU;
  else return sw_error(SW_STATUS_INVALID, "%s: unknown activation '%s' (relu, sigmoid, tanh, gelu, none)", b->err_ctx, act);
  char name[160];
  snprintf(name, sizeof name, "%s.%s", lname, act);
  return op(b, t, &x, 1, NULL, name, out);
}

static sw_init_kind weight_init(const json_t *l, const char *act) {
  sw_init_kind k;
  const char *name = json_string_value(json_object_get(l, "init"));
  if (name && !sw_init_kind_from_name(name, &k)) return k;
  return act && !strcmp(act, "relu") ? SW_INIT_HE_UNIFORM : SW_INIT_GLOROT_UNIFORM;
}

/* The node a layer reads: `from` (a layer or input name) or the previous node. */
static sw_status layer_input(builder *b, const json_t *l, sw_node prev, sw_node *out) {
  const json_t *from = json_object_get(l, "from");
  if (!from) {
    *out = prev;
    return SW_STATUS_OK;
  }
  const char *name = json_string_value(from);
  const json_t *id = name ? json_object_get(b->named, name) : NULL;
  if (!id) return sw_error(SW_STATUS_INVALID, "%s: from: no layer or input named '%s'", b->err_ctx, name ? name : "?");
  *out = (sw_node)json_integer_value(id);
  return SW_STATUS_OK;
}

static int64_t int_or(const json_t *l, const char *key, int64_t dflt) {
  const json_t *v = json_object_get(l, key);
  return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static sw_status build_layer(builder *b, const json_t *l, size_t idx, sw_node prev, sw_node *out) {
  const char *type = json_string_value(json_object_get(l, "type"));
  const char *given = json_string_value(json_object_get(l, "name"));
  char lname[96];
  if (given) snprintf(lname, sizeof lname, "%s", given);
  else snprintf(lname, sizeof lname, "%s%zu", type, idx + 1);
  snprintf(b->err_ctx, sizeof b->err_ctx, "layer %zu (%s)", idx + 1, type);
  const char *act = json_string_value(json_object_get(l, "activation"));
  sw_node x;
  sw_status st = layer_input(b, l, prev, &x);
  if (st) return st;
  int rank = sw_graph_rank(b->g, x);
  const int64_t *shape = sw_graph_shape(b->g, x);
  sw_op_attrs a;
  sw_node y;
  if (!strcmp(type, "dense")) {
    int64_t units = int_or(l, "units", 0);
    if (units < 1) return sw_error(SW_STATUS_INVALID, "%s: units must be >= 1", b->err_ctx);
    if (rank != 2) {
      /* flatten whatever comes in, as Keras' Dense on a flattened input */
      sw_op_attrs_default(SW_OP_FLATTEN, &a);
      char fname[128];
      snprintf(fname, sizeof fname, "%s.flatten", lname);
      st = op(b, SW_OP_FLATTEN, &x, 1, &a, fname, &x);
      if (st) return st;
      shape = sw_graph_shape(b->g, x);
    }
    int64_t in = shape[1];
    int64_t ws[2] = {units, in}, bs[1] = {units};
    sw_node w, bias;
    st = param(b, lname, "weight", 2, ws, weight_init(l, act), in, units, &w);
    if (!st) st = param(b, lname, "bias", 1, bs, SW_INIT_ZEROS, in, units, &bias);
    if (st) return st;
    sw_op_attrs_default(SW_OP_GEMM, &a);
    a.trans_b = 1; /* weight [out, in], as PyTorch's Linear and ONNX exporters have it */
    sw_node in3[3] = {x, w, bias};
    st = op(b, SW_OP_GEMM, in3, 3, &a, lname, &y);
    if (!st) st = activation(b, act, lname, y, &y);
  } else if (!strcmp(type, "conv2d") || !strcmp(type, "conv1d")) {
    bool two = type[4] == '2';
    int64_t filters = int_or(l, "filters", 0), k = int_or(l, "kernel", 3), stride = int_or(l, "stride", 1),
            dil = int_or(l, "dilation", 1);
    if (filters < 1 || k < 1 || stride < 1 || dil < 1)
      return sw_error(SW_STATUS_INVALID, "%s: filters, kernel, stride and dilation must be >= 1", b->err_ctx);
    if (rank != (two ? 4 : 3))
      return sw_error(SW_STATUS_INVALID, "%s: needs input of rank %d (N, C, %s), has %d", b->err_ctx, two ? 4 : 3,
                      two ? "H, W" : "L", rank);
    const char *padding = json_string_value(json_object_get(l, "padding"));
    int64_t pad = 0;
    if (padding && !strcmp(padding, "same")) {
      if (stride != 1 || ((k - 1) * dil) % 2)
        return sw_error(SW_STATUS_INVALID, "%s: padding same needs stride 1 and an odd kernel span", b->err_ctx);
      pad = (k - 1) * dil / 2;
    } else if (padding && strcmp(padding, "valid")) {
      return sw_error(SW_STATUS_INVALID, "%s: padding is same or valid", b->err_ctx);
    } else if (!padding) {
      pad = int_or(l, "pad", 0);
    }
    int64_t c = shape[1];
    int64_t ws[4] = {filters, c, k, k}, bs[1] = {filters};
    int wr = two ? 4 : 3;
    int64_t fan_in = c * k * (two ? k : 1), fan_out = filters * k * (two ? k : 1);
    sw_node w, bias;
    st = param(b, lname, "weight", wr, ws, weight_init(l, act), fan_in, fan_out, &w);
    if (!st) st = param(b, lname, "bias", 1, bs, SW_INIT_ZEROS, fan_in, fan_out, &bias);
    if (st) return st;
    sw_op_attrs_default(SW_OP_CONV, &a);
    a.stride[1] = stride;
    a.dilation[1] = dil;
    a.pad[1] = a.pad[3] = pad;
    if (two) {
      a.stride[0] = stride;
      a.dilation[0] = dil;
      a.pad[0] = a.pad[2] = pad;
    }
    sw_node in3[3] = {x, w, bias};
    st = op(b, SW_OP_CONV, in3, 3, &a, lname, &y);
    if (!st) st = activation(b, act, lname, y, &y);
  } else if (!strcmp(type, "max_pool") || !strcmp(type, "avg_pool")) {
    int64_t size = int_or(l, "size", 2), stride = int_or(l, "stride", size);
    sw_op_type t = type[0] == 'm' ? SW_OP_MAX_POOL : SW_OP_AVERAGE_POOL;
    sw_op_attrs_default(t, &a);
    a.kernel[1] = size;
    a.stride[1] = stride;
    if (rank == 4) {
      a.kernel[0] = size;
      a.stride[0] = stride;
    }
    st = op(b, t, &x, 1, &a, lname, &y);
  } else if (!strcmp(type, "global_avg_pool")) {
    st = op(b, SW_OP_GLOBAL_AVERAGE_POOL, &x, 1, NULL, lname, &y);
  } else if (!strcmp(type, "flatten")) {
    st = op(b, SW_OP_FLATTEN, &x, 1, NULL, lname, &y);
  } else if (!strcmp(type, "reshape")) {
    const json_t *to = json_object_get(l, "shape");
    sw_op_attrs_default(SW_OP_RESHAPE, &a);
    if (!json_is_array(to) || json_array_size(to) + 1 > SW_NN_MAX_RANK)
      return sw_error(SW_STATUS_INVALID, "%s: shape is a list of sizes without the batch", b->err_ctx);
    a.shape_rank = (int)json_array_size(to) + 1;
    a.shape[0] = 0;
    for (size_t i = 0; i < json_array_size(to); i++) a.shape[i + 1] = json_integer_value(json_array_get(to, i));
    st = op(b, SW_OP_RESHAPE, &x, 1, &a, lname, &y);
  } else if (!strcmp(type, "dropout")) {
    double rate;
    if (!get_num(l, "rate", 0.5, &rate) || rate < 0 || rate >= 1)
      return sw_error(SW_STATUS_INVALID, "%s: rate must be in [0, 1)", b->err_ctx);
    sw_op_attrs_default(SW_OP_DROPOUT, &a);
    a.ratio = (float)rate;
    st = op(b, SW_OP_DROPOUT, &x, 1, &a, lname, &y);
  } else if (!strcmp(type, "batch_norm")) {
    if (rank < 2) return sw_error(SW_STATUS_INVALID, "%s: needs N, C, ... input", b->err_ctx);
    int64_t cs[1] = {shape[1]};
    sw_node sc, bi, mean, var;
    char nm[160];
    st = param(b, lname, "weight", 1, cs, SW_INIT_ONES, 1, 1, &sc);
    if (!st) st = param(b, lname, "bias", 1, cs, SW_INIT_ZEROS, 1, 1, &bi);
    snprintf(nm, sizeof nm, "%s.running_mean", lname);
    if (!st) st = sw_graph_buffer(b->g, nm, 1, cs, &mean);
    snprintf(nm, sizeof nm, "%s.running_var", lname);
    if (!st) st = sw_graph_buffer(b->g, nm, 1, cs, &var);
    if (st) return st;
    float *v = sw_graph_data(b->g, var);
    for (int64_t i = 0; i < cs[0]; i++) v[i] = 1.0f;
    double mom;
    if (!get_num(l, "momentum", 0.1, &mom)) return sw_error(SW_STATUS_INVALID, "%s: momentum is a number", b->err_ctx);
    sw_op_attrs_default(SW_OP_BATCH_NORM, &a);
    a.momentum = (float)(1.0 - mom); /* PyTorch's momentum 0.1 is ONNX's 0.9 */
    sw_node in5[5] = {x, sc, bi, mean, var};
    st = op(b, SW_OP_BATCH_NORM, in5, 5, &a, lname, &y);
    if (!st) st = activation(b, act, lname, y, &y);
  } else if (!strcmp(type, "layer_norm")) {
    int64_t ds[1] = {shape[rank - 1]};
    sw_node sc, bi;
    st = param(b, lname, "weight", 1, ds, SW_INIT_ONES, 1, 1, &sc);
    if (!st) st = param(b, lname, "bias", 1, ds, SW_INIT_ZEROS, 1, 1, &bi);
    if (st) return st;
    sw_node in3[3] = {x, sc, bi};
    st = op(b, SW_OP_LAYER_NORM, in3, 3, NULL, lname, &y);
  } else if (!strcmp(type, "embedding")) {
    int64_t vocab = int_or(l, "vocab", 0), dim = int_or(l, "dim", 0);
    if (vocab < 1 || dim < 1) return sw_error(SW_STATUS_INVALID, "%s: vocab and dim must be >= 1", b->err_ctx);
    if (sw_graph_dtype(b->g, x) != SW_DTYPE_I64)
      return sw_error(SW_STATUS_INVALID, "%s: an embedding reads integer ids", b->err_ctx);
    int64_t ts[2] = {vocab, dim};
    sw_node table;
    st = param(b, lname, "weight", 2, ts, SW_INIT_GLOROT_NORMAL, vocab, dim, &table);
    if (st) return st;
    sw_node in2[2] = {table, x};
    st = op(b, SW_OP_GATHER, in2, 2, NULL, lname, &y);
  } else if (!strcmp(type, "concat")) {
    const json_t *froms = json_object_get(l, "inputs");
    if (!json_is_array(froms) || json_array_size(froms) < 2 || json_array_size(froms) > 8)
      return sw_error(SW_STATUS_INVALID, "%s: inputs is a list of 2 to 8 layer or input names", b->err_ctx);
    sw_node ins[8];
    for (size_t i = 0; i < json_array_size(froms); i++) {
      const char *nm = json_string_value(json_array_get(froms, i));
      const json_t *id = nm ? json_object_get(b->named, nm) : NULL;
      if (!id) return sw_error(SW_STATUS_INVALID, "%s: no layer or input named '%s'", b->err_ctx, nm ? nm : "?");
      ins[i] = (sw_node)json_integer_value(id);
    }
    sw_op_attrs_default(SW_OP_CONCAT, &a);
    a.axis = int_or(l, "axis", -1);
    st = op(b, SW_OP_CONCAT, ins, (int)json_array_size(froms), &a, lname, &y);
  } else { /* activation */
    st = activation(b, act, lname, x, &y);
  }
  if (st) return st;
  json_object_set_new(b->named, lname, json_integer(y));
  *out = y;
  return SW_STATUS_OK;
}

/* The transform of one feature (manifest.json) as the first nodes after its input. */
static sw_status transform(builder *b, const sw_dataset *ds, const sw_model_input *in, sw_node x, sw_node *out) {
  *out = x;
  const json_t *t = json_object_get(json_object_get(json_object_get(sw_dataset_manifest(ds), "transform"), "features"),
                                    in->feature);
  const char *kind = json_string_value(json_object_get(t, "kind"));
  if (!kind || !strcmp(kind, "vocabulary")) return SW_STATUS_OK; /* ids come from the reader */
  char name[160];
  sw_node k0 = -1, k1 = -1, y = -1;
  sw_status st;
  snprintf(b->err_ctx, sizeof b->err_ctx, "input '%s'", in->name);
  if (!strcmp(kind, "scale")) {
    snprintf(name, sizeof name, "%s.scale", in->name);
    st = scalar_const(b, name, (float)json_number_value(json_object_get(t, "scale")), &k0);
    sw_node p[2] = {x, k0};
    if (!st) st = op(b, SW_OP_MUL, p, 2, NULL, name, &y);
    double offset = json_number_value(json_object_get(t, "offset"));
    if (!st && offset != 0) {
      snprintf(name, sizeof name, "%s.offset", in->name);
      st = scalar_const(b, name, (float)offset, &k1);
      sw_node q[2] = {y, k1};
      if (!st) st = op(b, SW_OP_ADD, q, 2, NULL, name, &y);
    }
  } else if (!strcmp(kind, "standardize")) {
    snprintf(name, sizeof name, "%s.mean", in->name);
    st = scalar_const(b, name, (float)json_number_value(json_object_get(t, "mean")), &k0);
    sw_node p[2] = {x, k0};
    if (!st) st = op(b, SW_OP_SUB, p, 2, NULL, name, &y);
    snprintf(name, sizeof name, "%s.std", in->name);
    if (!st) st = scalar_const(b, name, (float)json_number_value(json_object_get(t, "std")), &k1);
    sw_node q[2] = {y, k1};
    if (!st) st = op(b, SW_OP_DIV, q, 2, NULL, name, &y);
  } else {
    return sw_error(SW_STATUS_UNSUPPORTED, "feature '%s': unknown transform '%s'", in->feature, kind);
  }
  if (st) return st;
  *out = y;
  return SW_STATUS_OK;
}

static int64_t elements_of(int rank, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= shape[i];
  return n;
}

void sw_model_free(sw_model *m) {
  if (!m) return;
  sw_graph_free(m->g);
  sw_free(m);
}

sw_status sw_model_build(const sw_model_spec *spec, const sw_dataset *ds, bool with_loss, sw_model **out) {
  *out = NULL;
  sw_model *m = sw_calloc(1, sizeof *m);
  builder b = {.spec = spec, .m = m, .named = json_object()};
  sw_status st = m ? sw_graph_new(&m->g) : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st) goto out;
  b.g = m->g;
  m->label = m->loss = -1;
  const sw_schema *schema = sw_dataset_schema(ds);
  sw_node prev = -1;
  for (size_t i = 0; i < spec->n_inputs; i++) {
    const sw_model_input *in = &spec->inputs[i];
    const sw_feature_spec *fs = sw_schema_find(schema, in->feature);
    if (!fs) {
      st = sw_error(SW_STATUS_INVALID, "model input '%s': the dataset has no feature '%s'", in->name, in->feature);
      goto out;
    }
    int64_t elems = sw_feature_spec_elements(fs);
    int64_t shape[SW_NN_MAX_RANK] = {-1};
    int rank = in->rank + 1;
    for (int d = 0; d < in->rank; d++) shape[d + 1] = in->shape[d];
    if (in->rank == 0) { /* the feature's own shape */
      rank = fs->rank + 1;
      for (int d = 0; d < fs->rank; d++) shape[d + 1] = fs->shape[d];
    }
    if (elems < 0 || elements_of(rank - 1, shape + 1) != elems) {
      st = sw_error(SW_STATUS_INVALID, "model input '%s': shape holds %lld values, feature '%s' has %lld", in->name,
                    (long long)elements_of(rank - 1, shape + 1), in->feature, (long long)elems);
      goto out;
    }
    bool ids = fs->kind == SW_FEATURE_KIND_INT64 || (fs->kind == SW_FEATURE_KIND_BYTES && !fs->image);
    st = sw_graph_input(m->g, in->name, ids ? SW_DTYPE_I64 : SW_DTYPE_F32, rank, shape, &m->inputs[i]);
    if (st) goto out;
    m->n_inputs++;
    sw_node t;
    st = transform(&b, ds, in, m->inputs[i], &t);
    if (st) goto out;
    json_object_set_new(b.named, in->name, json_integer(t));
    prev = t;
  }
  size_t i;
  const json_t *l;
  json_array_foreach(spec->layers, i, l) {
    st = build_layer(&b, l, i, prev, &prev);
    if (st) goto out;
  }
  m->logits = prev;
  if (sw_graph_rank(m->g, prev) != 2) {
    st = sw_error(SW_STATUS_INVALID, "the last layer must give [batch, outputs], not rank %d", sw_graph_rank(m->g, prev));
    goto out;
  }
  m->classes = sw_graph_shape(m->g, prev)[1];
  const sw_feature_spec *lf = sw_schema_find(schema, spec->label);
  if (!lf) {
    st = sw_error(SW_STATUS_INVALID, "the dataset has no label feature '%s'", spec->label);
    goto out;
  }
  if (spec->loss == SW_LOSS_SOFTMAX_CE) {
    if (lf->n_classes && (int64_t)lf->n_classes != m->classes) {
      st = sw_error(SW_STATUS_INVALID, "the model gives %lld outputs, the label has %zu classes", (long long)m->classes,
                    lf->n_classes);
      goto out;
    }
    st = sw_graph_op(m->g, SW_OP_SOFTMAX, &prev, 1, NULL, "probabilities", &m->output);
  } else if (spec->loss == SW_LOSS_BCE_WITH_LOGITS) {
    if (m->classes != 1) {
      st = sw_error(SW_STATUS_INVALID, "bce_with_logits needs one output per example, not %lld", (long long)m->classes);
      goto out;
    }
    st = sw_graph_op(m->g, SW_OP_SIGMOID, &prev, 1, NULL, "probabilities", &m->output);
  } else {
    m->output = prev;
  }
  if (st) goto out;
  sw_graph_mark_output(m->g, m->logits);
  sw_graph_mark_output(m->g, m->output);
  if (with_loss) {
    int64_t ls[1] = {-1};
    bool ce = spec->loss == SW_LOSS_SOFTMAX_CE;
    st = sw_graph_input(m->g, spec->label, ce ? SW_DTYPE_I64 : SW_DTYPE_F32, 1, ls, &m->label);
    if (st) goto out;
    sw_node in2[2] = {prev, m->label};
    sw_op_type lt = ce ? SW_OP_SOFTMAX_CROSS_ENTROPY : spec->loss == SW_LOSS_BCE_WITH_LOGITS ? SW_OP_BCE_WITH_LOGITS : SW_OP_MSE;
    st = sw_graph_op(m->g, lt, in2, 2, NULL, "loss", &m->loss);
    if (st) goto out;
  }
out:
  json_decref(b.named);
  if (st) {
    sw_model_free(m);
    return st;
  }
  *out = m;
  return SW_STATUS_OK;
}

/* ---- feeding batches --------------------------------------------------------------- */

static sw_status feed_one(sw_graph *g, sw_node node, const sw_batch_tensor *t, size_t n) {
  int64_t want = sw_graph_elements(g, node), have = 1;
  for (int d = 0; d < t->rank; d++) have *= t->shape[d];
  if (want != have)
    return sw_error(SW_STATUS_INVALID, "feature '%s' has %lld values in this batch, input '%s' takes %lld", t->name,
                    (long long)have, sw_graph_name(g, node), (long long)want);
  void *dst = sw_graph_data(g, node);
  sw_dtype dt = sw_graph_dtype(g, node);
  if (dt == t->dtype) {
    memcpy(dst, t->data, (size_t)want * sw_dtype_size(dt));
  } else if (dt == SW_DTYPE_F32 && t->dtype == SW_DTYPE_I64) {
    for (int64_t i = 0; i < want; i++) ((float *)dst)[i] = (float)((const int64_t *)t->data)[i];
  } else if (dt == SW_DTYPE_I64 && t->dtype == SW_DTYPE_F32) {
    for (int64_t i = 0; i < want; i++) ((int64_t *)dst)[i] = (int64_t)((const float *)t->data)[i];
  } else {
    return sw_error(SW_STATUS_INVALID, "feature '%s' cannot feed input '%s'", t->name, sw_graph_name(g, node));
  }
  (void)n;
  return SW_STATUS_OK;
}

sw_status sw_model_feed(sw_model *m, const sw_model_spec *spec, const sw_batch *b) {
  sw_status st = sw_graph_set_batch(m->g, (int64_t)b->n);
  if (st) return st;
  for (size_t i = 0; i < m->n_inputs; i++) {
    const sw_batch_tensor *t = sw_batch_find(b, spec->inputs[i].feature);
    if (!t) return sw_error(SW_STATUS_INVALID, "the batch has no feature '%s'", spec->inputs[i].feature);
    st = feed_one(m->g, m->inputs[i], t, b->n);
    if (st) return st;
  }
  if (m->label >= 0) {
    const sw_batch_tensor *t = sw_batch_find(b, spec->label);
    if (!t) return sw_error(SW_STATUS_INVALID, "the batch has no label '%s'", spec->label);
    st = feed_one(m->g, m->label, t, b->n);
  }
  return st;
}

/* ---- parameters on disk -------------------------------------------------------------- */

/* Parameters then buffers, in creation order. */
static size_t saved_nodes(const sw_model *m, sw_node *out, size_t cap) {
  const sw_node *p, *q;
  size_t np = sw_graph_params(m->g, &p), nb = sw_graph_buffers(m->g, &q), k = 0;
  for (size_t i = 0; i < np && k < cap; i++) out[k++] = p[i];
  for (size_t i = 0; i < nb && k < cap; i++) out[k++] = q[i];
  return k;
}

sw_status sw_model_params_sha256(const sw_model *m, char hex[SW_SHA256_HEX_LEN]) {
  sw_node nodes[1024];
  size_t n = saved_nodes(m, nodes, 1024);
  sw_sha256 *h;
  sw_status st = sw_sha256_new(&h);
  if (st) return st;
  for (size_t i = 0; i < n && !st; i++) {
    const char *name = sw_graph_name(m->g, nodes[i]);
    int rank = sw_graph_rank(m->g, nodes[i]);
    st = sw_sha256_update(h, name, strlen(name) + 1);
    if (!st) st = sw_sha256_update(h, sw_graph_shape(m->g, nodes[i]), (size_t)rank * sizeof(int64_t));
    if (!st) st = sw_sha256_update(h, sw_graph_data(m->g, nodes[i]), (size_t)sw_graph_elements(m->g, nodes[i]) * sizeof(float));
  }
  if (!st) st = sw_sha256_final_hex(h, hex);
  sw_sha256_free(h);
  return st;
}

sw_status sw_model_save(const sw_model *m, const char *path, const json_t *metadata) {
  sw_node nodes[1024];
  size_t n = saved_nodes(m, nodes, 1024);
  sw_named_tensor *t = sw_calloc(n ? n : 1, sizeof *t);
  if (!t) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    t[i].name = sw_graph_name(m->g, nodes[i]);
    t[i].dtype = SW_DTYPE_F32;
    t[i].rank = sw_graph_rank(m->g, nodes[i]);
    memcpy(t[i].shape, sw_graph_shape(m->g, nodes[i]), (size_t)t[i].rank * sizeof(int64_t));
    t[i].data = sw_graph_data(m->g, nodes[i]);
  }
  sw_status st = sw_safetensors_write(path, t, n, metadata);
  sw_free(t);
  return st;
}

sw_status sw_model_load(sw_model *m, const char *path) {
  sw_safetensors *sf = NULL;
  sw_status st = sw_safetensors_open(path, &sf);
  if (st) return st;
  sw_node nodes[1024];
  size_t n = saved_nodes(m, nodes, 1024);
  for (size_t i = 0; i < n && !st; i++) {
    const char *name = sw_graph_name(m->g, nodes[i]);
    const sw_named_tensor *t = sw_safetensors_find(sf, name);
    int rank = sw_graph_rank(m->g, nodes[i]);
    if (!t) {
      st = sw_error(SW_STATUS_FORMAT, "%s: no tensor '%s'", path, name);
    } else if (t->dtype != SW_DTYPE_F32 || t->rank != rank ||
               memcmp(t->shape, sw_graph_shape(m->g, nodes[i]), (size_t)rank * sizeof(int64_t))) {
      st = sw_error(SW_STATUS_FORMAT, "%s: tensor '%s' has another type or shape than the model's", path, name);
    } else {
      memcpy(sw_graph_data(m->g, nodes[i]), t->data, (size_t)sw_graph_elements(m->g, nodes[i]) * sizeof(float));
    }
  }
  sw_safetensors_close(sf);
  return st;
}

/* ---- the ONNX artifact ------------------------------------------------------------------ */

sw_status sw_model_export_onnx(const sw_model *m, const sw_model_spec *spec, const sw_dataset *ds, const char *run_id,
                               const char *path) {
  json_t *classes = json_array(), *features = json_array();
  char *classes_s = NULL, *features_s = NULL;
  sw_status st = SW_STATUS_OK;
  if (!classes || !features) goto nomem;
  const sw_feature_spec *lf = sw_schema_find(sw_dataset_schema(ds), spec->label);
  if (lf && spec->loss == SW_LOSS_SOFTMAX_CE)
    for (size_t i = 0; i < lf->n_classes; i++) json_array_append_new(classes, json_string(lf->class_names[i]));
  for (size_t i = 0; i < spec->n_inputs; i++) json_array_append_new(features, json_string(spec->inputs[i].feature));
  classes_s = json_dumps(classes, JSON_COMPACT);
  features_s = json_dumps(features, JSON_COMPACT);
  if (!classes_s || !features_s) goto nomem;
  sw_onnx_meta meta[4] = {{"slipway.class_names", classes_s},
                          {"slipway.input_features", features_s},
                          {"slipway.run", run_id ? run_id : ""},
                          {"slipway.model", spec->name}};
  st = sw_onnx_export(m->g, &m->output, 1, meta, 4, path);
  goto out;
nomem:
  st = sw_error(SW_STATUS_NOMEM, "out of memory");
out:
  free(classes_s); /* jansson's allocator */
  free(features_s);
  json_decref(classes);
  json_decref(features);
  return st;
}
