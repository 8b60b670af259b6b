/* ONNX import: an ONNX model (protobuf, parsed by protobuf-c) into a new graph. Engine
 * ops map one to one; the common exporter ops without an engine op are rewritten into
 * engine ops (Clip, ReduceMean, Pad, Sum) or folded at import time when their inputs
 * are known then (Shape/Gather/Unsqueeze/Concat chains that compute a Reshape's target,
 * with the batch as a symbolic dimension). Anything else fails with the op and node. */
#include <math.h>
#include <string.h>

#include "nn/nn_int.h"
#include "onnx.pb-c.h"

/* The symbolic batch dimension inside a folded shape value. */
#define BATCH_DIM INT64_MIN
/* Largest tensor the importer accepts (elements), so a declared size can't ask for more. */
#define MAX_ELEMENTS ((int64_t)1 << 31)

enum { ONNX_FLOAT = 1, ONNX_INT32 = 6, ONNX_INT64 = 7, ONNX_DOUBLE = 11 };

/* A named value of the ONNX graph: a graph node, or a tensor known at import time
 * (initializers, Constant outputs, folded shapes) turned into a node when an op needs it. */
typedef struct {
  char *name;
  sw_node node; /* -1 while only known at import time */
  bool known;
  sw_dtype dtype;
  int rank;
  int64_t shape[SW_NN_MAX_RANK];
  void *data; /* known values: f32 or i64, C order */
  bool symbolic; /* an i64 value holding BATCH_DIM */
} value;

typedef struct {
  sw_graph *g;
  value *v;
  size_t n, cap;
  const Onnx__NodeProto *node; /* the node being imported, for messages */
  int64_t opset;               /* of the default domain */
  char nodename[128];
} importer;

static const char *node_label(importer *im) { return im->nodename; }

static sw_status node_error(importer *im, sw_status st, const char *fmt, const char *detail) {
  return sw_error(st, "ONNX node '%s' (%s): %s%s", node_label(im), im->node->op_type ? im->node->op_type : "?", fmt,
                  detail ? detail : "");
}

static value *find(importer *im, const char *name) {
  for (size_t i = im->n; i-- > 0;)
    if (!strcmp(im->v[i].name, name)) return &im->v[i];
  return NULL;
}

static sw_status add_value(importer *im, const char *name, value **out) {
  if (!name || !name[0]) return sw_error(SW_STATUS_FORMAT, "ONNX: a value without a name");
  if (find(im, name)) return sw_error(SW_STATUS_FORMAT, "ONNX: value '%s' is defined twice", name);
  if (im->n == im->cap) {
    size_t cap = im->cap ? 2 * im->cap : 64;
    value *v = sw_realloc(im->v, cap * sizeof *v);
    if (!v) return sw_error(SW_STATUS_NOMEM, "out of memory");
    im->v = v;
    im->cap = cap;
  }
  value *v = &im->v[im->n];
  memset(v, 0, sizeof *v);
  v->node = -1;
  v->name = sw_strdup(name);
  if (!v->name) return sw_error(SW_STATUS_NOMEM, "out of memory");
  im->n++;
  *out = v;
  return SW_STATUS_OK;
}

static bool elements_of(int rank, const int64_t *shape, int64_t *out) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n) || n > MAX_ELEMENTS) return false;
  }
  *out = n;
  return true;
}

/* A known value of the given type and shape with fresh, uninitialized data. */
static sw_status add_known(importer *im, const char *name, sw_dtype dtype, int rank, const int64_t *shape, value **out) {
  int64_t n;
  if (rank < 0 || rank > SW_NN_MAX_RANK || !elements_of(rank, shape, &n))
    return sw_error(SW_STATUS_UNSUPPORTED, "ONNX: value '%s': rank above %d or too many elements", name, SW_NN_MAX_RANK);
  value *v = NULL;
  sw_status st = add_value(im, name, &v);
  if (st) return st;
  v->known = true;
  v->dtype = dtype;
  v->rank = rank;
  for (int i = 0; i < rank; i++) v->shape[i] = shape[i];
  v->data = sw_malloc((size_t)(n ? n : 1) * 8);
  if (!v->data) return sw_error(SW_STATUS_NOMEM, "out of memory");
  *out = v;
  return SW_STATUS_OK;
}

static int64_t known_elements(const value *v) {
  int64_t n = 1;
  for (int i = 0; i < v->rank; i++) n *= v->shape[i];
  return n;
}

/* ---- tensors -------------------------------------------------------------------------- */

static sw_status tensor_value(importer *im, const Onnx__TensorProto *t, const char *name, value **out) {
  if (t->n_external_data || (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL))
    return sw_error(SW_STATUS_UNSUPPORTED, "ONNX tensor '%s': external data is not supported (save the model with its weights inside)", name);
  if (t->segment) return sw_error(SW_STATUS_UNSUPPORTED, "ONNX tensor '%s': segmented tensors are not supported", name);
  if (t->n_dims > SW_NN_MAX_RANK) return sw_error(SW_STATUS_UNSUPPORTED, "ONNX tensor '%s': rank %zu is above %d", name, t->n_dims, SW_NN_MAX_RANK);
  int64_t n;
  if (!elements_of((int)t->n_dims, t->dims, &n))
    return sw_error(SW_STATUS_FORMAT, "ONNX tensor '%s': negative or too large dimensions", name);
  int32_t type = t->data_type;
  sw_dtype dtype;
  size_t esize;
  switch (type) {
    case ONNX_FLOAT: dtype = SW_DTYPE_F32; esize = 4; break;
    case ONNX_DOUBLE: dtype = SW_DTYPE_F32; esize = 8; break;
    case ONNX_INT64: dtype = SW_DTYPE_I64; esize = 8; break;
    case ONNX_INT32: dtype = SW_DTYPE_I64; esize = 4; break;
    default: return sw_error(SW_STATUS_UNSUPPORTED, "ONNX tensor '%s': data type %d is not supported (float, double, int32, int64 are)", name, (int)type);
  }
  size_t typed = type == ONNX_FLOAT ? t->n_float_data : type == ONNX_INT64 ? t->n_int64_data
               : type == ONNX_INT32 ? t->n_int32_data : t->n_double_data;
  if (t->has_raw_data && typed)
    return sw_error(SW_STATUS_FORMAT, "ONNX tensor '%s': data both in raw_data and a typed field", name);
  if (t->has_raw_data ? t->raw_data.len != (size_t)n * esize : typed != (size_t)n)
    return sw_error(SW_STATUS_FORMAT, "ONNX tensor '%s': %zu bytes or values of data for %lld elements", name,
                    t->has_raw_data ? t->raw_data.len : typed, (long long)n);
  value *v = NULL;
  sw_status st = add_known(im, name, dtype, (int)t->n_dims, t->dims, &v);
  if (st) return st;
  for (int64_t i = 0; i < n; i++) {
    const uint8_t *raw = t->has_raw_data ? t->raw_data.data + (size_t)i * esize : NULL;
    if (type == ONNX_FLOAT) {
      float f;
      if (raw) memcpy(&f, raw, 4);
      else f = t->float_data[i];
      ((float *)v->data)[i] = f;
    } else if (type == ONNX_DOUBLE) {
      double d;
      if (raw) memcpy(&d, raw, 8);
      else d = t->double_data[i];
      ((float *)v->data)[i] = (float)d;
    } else if (type == ONNX_INT64) {
      int64_t x;
      if (raw) memcpy(&x, raw, 8);
      else x = t->int64_data[i];
      ((int64_t *)v->data)[i] = x;
    } else {
      int32_t x;
      if (raw) memcpy(&x, raw, 4);
      else x = t->int32_data[i];
      ((int64_t *)v->data)[i] = x;
    }
  }
  if (dtype == SW_DTYPE_I64)
    for (int64_t i = 0; i < n; i++)
      if (((int64_t *)v->data)[i] == BATCH_DIM) ((int64_t *)v->data)[i] = BATCH_DIM + 1;
  *out = v;
  return SW_STATUS_OK;
}

/* ---- node inputs, outputs, attributes --------------------------------------------------- */

static const Onnx__AttributeProto *attr(importer *im, const char *name) {
  for (size_t i = 0; i < im->node->n_attribute; i++)
    if (im->node->attribute[i]->name && !strcmp(im->node->attribute[i]->name, name)) return im->node->attribute[i];
  return NULL;
}

/* Every attribute of the node must be one of `allowed` (NULL-terminated). */
static sw_status check_attrs(importer *im, const char *const *allowed) {
  for (size_t i = 0; i < im->node->n_attribute; i++) {
    const char *nm = im->node->attribute[i]->name ? im->node->attribute[i]->name : "";
    bool ok = false;
    for (size_t k = 0; allowed && allowed[k] && !ok; k++) ok = !strcmp(allowed[k], nm);
    if (!ok) return node_error(im, SW_STATUS_UNSUPPORTED, "unsupported attribute ", nm);
  }
  return SW_STATUS_OK;
}

static sw_status attr_int(importer *im, const char *name, int64_t def, int64_t *out) {
  const Onnx__AttributeProto *a = attr(im, name);
  *out = def;
  if (!a) return SW_STATUS_OK;
  if (!a->has_i) return node_error(im, SW_STATUS_FORMAT, "attribute is not an int: ", name);
  *out = a->i;
  return SW_STATUS_OK;
}

static sw_status attr_float(importer *im, const char *name, float def, float *out) {
  const Onnx__AttributeProto *a = attr(im, name);
  *out = def;
  if (!a) return SW_STATUS_OK;
  if (!a->has_f) return node_error(im, SW_STATUS_FORMAT, "attribute is not a float: ", name);
  *out = a->f;
  return SW_STATUS_OK;
}

/* An ints attribute of at most `max` values; *n = 0 when absent. */
static sw_status attr_ints(importer *im, const char *name, int64_t *out, size_t max, size_t *n) {
  const Onnx__AttributeProto *a = attr(im, name);
  *n = 0;
  if (!a) return SW_STATUS_OK;
  if (a->n_ints > max) return node_error(im, SW_STATUS_UNSUPPORTED, "too many values in attribute ", name);
  for (size_t i = 0; i < a->n_ints; i++) out[i] = a->ints[i];
  *n = a->n_ints;
  return SW_STATUS_OK;
}

static sw_status attr_string_is(importer *im, const char *name, const char *const *allowed) {
  const Onnx__AttributeProto *a = attr(im, name);
  if (!a) return SW_STATUS_OK;
  for (size_t k = 0; allowed[k]; k++)
    if (a->s.len == strlen(allowed[k]) && (!a->s.len || !memcmp(a->s.data, allowed[k], a->s.len))) return SW_STATUS_OK;
  return node_error(im, SW_STATUS_UNSUPPORTED, "unsupported value of attribute ", name);
}

/* Input i of the node; NULL when absent (fewer inputs or an empty name). */
static sw_status input(importer *im, size_t i, bool required, value **out) {
  *out = NULL;
  if (i >= im->node->n_input || !im->node->input[i] || !im->node->input[i][0]) {
    if (required) return node_error(im, SW_STATUS_FORMAT, "a required input is missing", NULL);
    return SW_STATUS_OK;
  }
  *out = find(im, im->node->input[i]);
  if (!*out) return node_error(im, SW_STATUS_FORMAT, "input is not defined before the node (a cycle or a missing value): ", im->node->input[i]);
  return SW_STATUS_OK;
}

static const char *out_name(importer *im) { return im->node->output[0]; }

/* The graph node of a value, making a constant of a known value on first use. */
static sw_status materialize(importer *im, value *v, sw_node *out) {
  if (v->node < 0) {
    if (v->symbolic)
      return node_error(im, SW_STATUS_UNSUPPORTED, "a value that depends on the batch size is used as data: ", v->name);
    sw_status st = sw_graph_const(im->g, v->name, v->dtype, v->rank, v->shape, v->data, &v->node);
    if (st) return st;
  }
  *out = v->node;
  return SW_STATUS_OK;
}

/* Adds an engine op named after the node's first output (or a helper name) and, when
 * define is set, that output as its value. */
static sw_status op(importer *im, sw_op_type type, const sw_node *in, int n_in, const sw_op_attrs *a, const char *name,
                    bool define, sw_node *out) {
  sw_node id;
  sw_status st = sw_graph_op(im->g, type, in, n_in, a, name, &id);
  if (st) return st;
  if (define) {
    value *v = NULL;
    st = add_value(im, name, &v);
    if (st) return st;
    v->node = id;
  }
  if (out) *out = id;
  return SW_STATUS_OK;
}

static char *helper_name(importer *im, const char *suffix) { return sw_asprintf("%s/%s", out_name(im), suffix); }

/* Shape of a value as the graph sees it, batch included (1 before allocation). */
static bool is_batched(importer *im, const value *v) { return v->node >= 0 && im->g->nodes[v->node].batched; }

static void value_shape(importer *im, const value *v, int *rank, const int64_t **shape) {
  if (v->node >= 0) {
    *rank = sw_graph_rank(im->g, v->node);
    *shape = sw_graph_shape(im->g, v->node);
  } else {
    *rank = v->rank;
    *shape = v->shape;
  }
}

/* A known i64 vector (or scalar) input: its values, at most SW_NN_MAX_RANK * 2. */
static sw_status known_ints(importer *im, value *v, const char *what, int64_t *out, size_t max, size_t *n) {
  if (!v->known || v->dtype != SW_DTYPE_I64 || v->rank > 1)
    return node_error(im, SW_STATUS_UNSUPPORTED, "needs an int64 vector known at import time: ", what);
  int64_t k = known_elements(v);
  if ((size_t)k > max) return node_error(im, SW_STATUS_UNSUPPORTED, "too many values in ", what);
  for (int64_t i = 0; i < k; i++) out[i] = ((const int64_t *)v->data)[i];
  *n = (size_t)k;
  return SW_STATUS_OK;
}

/* A reshape of x to a target where BATCH_DIM marks the batch dimension. */
static sw_status reshape_to(importer *im, value *x, const int64_t *target, size_t n, const char *name, bool define) {
  sw_op_attrs a;
  sw_op_attrs_default(SW_OP_RESHAPE, &a);
  if (n < 1 || n > SW_NN_MAX_RANK) return node_error(im, SW_STATUS_UNSUPPORTED, "reshape to an unsupported rank", NULL);
  bool has_minus = false;
  for (size_t i = 0; i < n; i++) {
    has_minus |= target[i] == -1;
    if (target[i] > MAX_ELEMENTS) return node_error(im, SW_STATUS_FORMAT, "a reshape target dimension is too large", NULL);
  }
  a.shape_rank = (int)n;
  for (size_t i = 0; i < n; i++) {
    int64_t d = target[i];
    if (d == BATCH_DIM) {
      if (i == 0 && is_batched(im, x)) d = 0;
      else if (!has_minus) {
        d = -1;
        has_minus = true;
      } else return node_error(im, SW_STATUS_UNSUPPORTED, "a reshape target with the batch size in an unsupported place", NULL);
    }
    a.shape[i] = d;
  }
  sw_node in;
  sw_status st = materialize(im, x, &in);
  if (st) return st;
  return op(im, SW_OP_RESHAPE, &in, 1, &a, name, define, NULL);
}

/* ---- op importers ----------------------------------------------------------------------- */

static sw_status need_outputs(importer *im, size_t max) {
  if (im->node->n_output < 1 || !im->node->output[0] || !im->node->output[0][0])
    return node_error(im, SW_STATUS_FORMAT, "the node has no output", NULL);
  for (size_t i = max; i < im->node->n_output; i++)
    if (im->node->output[i] && im->node->output[i][0])
      return node_error(im, SW_STATUS_UNSUPPORTED, "unsupported extra output ", im->node->output[i]);
  return SW_STATUS_OK;
}

/* Identity and Dropout at inference: a new name for the input. */
static sw_status imp_identity(importer *im) {
  value *x;
  sw_status st = input(im, 0, true, &x);
  if (st) return st;
  size_t xi = (size_t)(x - im->v);
  value *v = NULL;
  st = add_value(im, out_name(im), &v);
  if (st) return st;
  x = &im->v[xi];
  v->node = x->node;
  v->known = x->known;
  v->dtype = x->dtype;
  v->rank = x->rank;
  memcpy(v->shape, x->shape, sizeof v->shape);
  v->symbolic = x->symbolic;
  if (x->known) {
    size_t bytes = (size_t)(known_elements(x) ? known_elements(x) : 1) * 8;
    v->data = sw_malloc(bytes);
    if (!v->data) return sw_error(SW_STATUS_NOMEM, "out of memory");
    memcpy(v->data, x->data, bytes);
  }
  return SW_STATUS_OK;
}

static sw_status imp_constant(importer *im) {
  static const char *const ok[] = {"value", "value_float", "value_floats", "value_int", "value_ints", NULL};
  sw_status st = check_attrs(im, ok);
  if (st) return st;
  if (im->node->n_attribute != 1) return node_error(im, SW_STATUS_FORMAT, "needs exactly one value attribute", NULL);
  const Onnx__AttributeProto *a = im->node->attribute[0];
  value *v = NULL;
  if (!strcmp(a->name, "value")) {
    if (!a->t) return node_error(im, SW_STATUS_FORMAT, "value is not a tensor", NULL);
    return tensor_value(im, a->t, out_name(im), &v);
  }
  bool is_float = !strcmp(a->name, "value_float") || !strcmp(a->name, "value_floats");
  bool list = !strcmp(a->name, "value_floats") || !strcmp(a->name, "value_ints");
  size_t n = list ? (is_float ? a->n_floats : a->n_ints) : 1;
  int64_t shape[1] = {(int64_t)n};
  if (n > (size_t)MAX_ELEMENTS) return node_error(im, SW_STATUS_FORMAT, "too many values", NULL);
  if (!list && !(is_float ? a->has_f : a->has_i)) return node_error(im, SW_STATUS_FORMAT, "the value is missing", NULL);
  st = add_known(im, out_name(im), is_float ? SW_DTYPE_F32 : SW_DTYPE_I64, list ? 1 : 0, shape, &v);
  if (st) return st;
  for (size_t i = 0; i < n; i++) {
    if (is_float) ((float *)v->data)[i] = list ? a->floats[i] : a->f;
    else ((int64_t *)v->data)[i] = list ? a->ints[i] : a->i;
  }
  return SW_STATUS_OK;
}

/* Shape of a graph value: known at import time, with the batch dimension symbolic. */
static sw_status imp_shape(importer *im) {
  static const char *const ok[] = {"start", "end", NULL};
  value *x;
  sw_status st = check_attrs(im, ok);
  if (!st) st = input(im, 0, true, &x);
  if (st) return st;
  int rank;
  const int64_t *shape;
  value_shape(im, x, &rank, &shape);
  int64_t start, end;
  st = attr_int(im, "start", 0, &start);
  if (!st) st = attr_int(im, "end", rank, &end);
  if (st) return st;
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  if (start < 0) start = 0;
  if (end > rank) end = rank;
  if (end < start) end = start;
  bool batched = is_batched(im, x);
  int64_t n[1] = {end - start};
  value *v = NULL;
  st = add_known(im, out_name(im), SW_DTYPE_I64, 1, n, &v);
  if (st) return st;
  for (int64_t i = start; i < end; i++) {
    ((int64_t *)v->data)[i - start] = i == 0 && batched ? BATCH_DIM : shape[i];
    v->symbolic |= i == 0 && batched;
  }
  return SW_STATUS_OK;
}

/* Axes from the attribute (opset < 13) or the second input (opset 13). */
static sw_status axes_of(importer *im, int64_t *axes, size_t *n, bool *given) {
  static const char *const ok[] = {"axes", NULL};
  sw_status st = check_attrs(im, ok);
  if (st) return st;
  const Onnx__AttributeProto *a = attr(im, "axes");
  *given = true;
  if (a) return attr_ints(im, "axes", axes, SW_NN_MAX_RANK, n);
  value *ax;
  st = input(im, 1, false, &ax);
  if (st) return st;
  if (!ax) {
    *given = false;
    *n = 0;
    return SW_STATUS_OK;
  }
  return known_ints(im, ax, "axes", axes, SW_NN_MAX_RANK, n);
}

/* Unsqueeze and Squeeze: a known value changes shape; a graph value is reshaped. */
static sw_status imp_squeeze(importer *im, bool unsqueeze) {
  value *x;
  int64_t axes[SW_NN_MAX_RANK];
  size_t n;
  bool given;
  sw_status st = input(im, 0, true, &x);
  if (!st) st = axes_of(im, axes, &n, &given);
  if (st) return st;
  size_t xi = (size_t)(x - im->v);
  int rank;
  const int64_t *shape;
  value_shape(im, x, &rank, &shape);
  int out_rank = unsqueeze ? rank + (int)n : rank;
  if (unsqueeze && !given) return node_error(im, SW_STATUS_FORMAT, "Unsqueeze needs axes", NULL);
  if (out_rank > SW_NN_MAX_RANK) return node_error(im, SW_STATUS_UNSUPPORTED, "rank too large", NULL);
  bool mark[SW_NN_MAX_RANK] = {0};
  for (size_t i = 0; i < n; i++) {
    int64_t a = axes[i] < 0 ? axes[i] + out_rank : axes[i];
    if (a < 0 || a >= out_rank || mark[a]) return node_error(im, SW_STATUS_FORMAT, "axes out of range or repeated", NULL);
    mark[a] = true;
  }
  bool batched = is_batched(im, x);
  int64_t target[SW_NN_MAX_RANK];
  size_t k = 0;
  if (unsqueeze) {
    for (int i = 0, j = 0; i < out_rank; i++) {
      if (mark[i]) {
        target[k++] = 1;
        continue;
      }
      target[k++] = j == 0 && batched ? BATCH_DIM : shape[j];
      j++;
    }
  } else {
    for (int i = 0; i < rank; i++) {
      bool drop = given ? mark[i] : shape[i] == 1 && !(i == 0 && batched);
      if (drop && (shape[i] != 1 || (i == 0 && batched))) return node_error(im, SW_STATUS_UNSUPPORTED, "squeezes a dimension that is not 1", NULL);
      if (!drop) target[k++] = i == 0 && batched ? BATCH_DIM : shape[i];
    }
  }
  if (x->known) {
    value *v = NULL;
    st = add_known(im, out_name(im), x->dtype, (int)k, target, &v);
    if (st) return st;
    x = &im->v[xi];
    memcpy(v->data, x->data, (size_t)(known_elements(x) ? known_elements(x) : 1) * 8);
    v->symbolic = x->symbolic;
    return SW_STATUS_OK;
  }
  if (k == 0) return node_error(im, SW_STATUS_UNSUPPORTED, "squeezes to a scalar", NULL);
  return reshape_to(im, x, target, k, out_name(im), true);
}

static sw_status imp_reshape(importer *im) {
  static const char *const ok[] = {"allowzero", NULL};
  value *x, *s;
  int64_t target[SW_NN_MAX_RANK], allowzero;
  size_t n;
  sw_status st = check_attrs(im, ok);
  if (!st) st = attr_int(im, "allowzero", 0, &allowzero);
  if (!st && allowzero) return node_error(im, SW_STATUS_UNSUPPORTED, "allowzero is not supported", NULL);
  if (!st) st = input(im, 0, true, &x);
  if (!st) st = input(im, 1, true, &s);
  if (!st) st = known_ints(im, s, "shape", target, SW_NN_MAX_RANK, &n);
  if (st) return st;
  if (x->known && !x->symbolic) {
    /* a known value keeps being known: resolve 0 and -1 here */
    int64_t total = known_elements(x), known = 1, shape[SW_NN_MAX_RANK];
    int at = -1;
    for (size_t i = 0; i < n; i++) {
      int64_t d = target[i] == 0 && (int)i < x->rank ? x->shape[i] : target[i];
      if (d == -1 && at < 0) at = (int)i, d = 1;
      else if (d < 0) return node_error(im, SW_STATUS_UNSUPPORTED, "bad reshape target", NULL);
      shape[i] = d;
      if (__builtin_mul_overflow(known, d, &known) || known > MAX_ELEMENTS)
        return node_error(im, SW_STATUS_FORMAT, "reshape target too large", NULL);
    }
    if (at >= 0 && known) shape[at] = total / known;
    if (sw__elements((int)n, shape) != total) return node_error(im, SW_STATUS_FORMAT, "the element counts differ", NULL);
    size_t xi = (size_t)(x - im->v);
    value *v = NULL;
    st = add_known(im, out_name(im), x->dtype, (int)n, shape, &v);
    if (st) return st;
    memcpy(v->data, im->v[xi].data, (size_t)(total ? total : 1) * 8);
    return SW_STATUS_OK;
  }
  return reshape_to(im, x, target, n, out_name(im), true);
}

/* Gather of known values (shape arithmetic) along any axis, else the engine's lookup. */
static sw_status imp_gather(importer *im) {
  static const char *const ok[] = {"axis", NULL};
  value *d, *ix;
  int64_t axis;
  sw_status st = check_attrs(im, ok);
  if (!st) st = attr_int(im, "axis", 0, &axis);
  if (!st) st = input(im, 0, true, &d);
  if (!st) st = input(im, 1, true, &ix);
  if (st) return st;
  if (d->known && ix->known) {
    if (ix->dtype != SW_DTYPE_I64) return node_error(im, SW_STATUS_FORMAT, "indices must be integers", NULL);
    if (axis < 0) axis += d->rank;
    if (axis < 0 || axis >= d->rank || d->rank + ix->rank - 1 > SW_NN_MAX_RANK)
      return node_error(im, SW_STATUS_FORMAT, "axis out of range", NULL);
    int64_t shape[SW_NN_MAX_RANK];
    int r = 0;
    for (int i = 0; i < axis; i++) shape[r++] = d->shape[i];
    for (int i = 0; i < ix->rank; i++) shape[r++] = ix->shape[i];
    for (int i = (int)axis + 1; i < d->rank; i++) shape[r++] = d->shape[i];
    size_t di = (size_t)(d - im->v), ii = (size_t)(ix - im->v);
    value *v = NULL;
    st = add_known(im, out_name(im), d->dtype, r, shape, &v);
    if (st) return st;
    d = &im->v[di];
    ix = &im->v[ii];
    int64_t outer = sw__elements((int)axis, d->shape), len = d->shape[axis];
    int64_t inner = sw__elements(d->rank - (int)axis - 1, d->shape + axis + 1), ni = known_elements(ix);
    int64_t *dst = v->data;
    const int64_t *src = d->data, *idx = ix->data; /* both 8 bytes per element */
    for (int64_t o = 0; o < outer; o++)
      for (int64_t k = 0; k < ni; k++) {
        int64_t j = idx[k] < 0 ? idx[k] + len : idx[k];
        if (j < 0 || j >= len) return node_error(im, SW_STATUS_FORMAT, "index out of range", NULL);
        for (int64_t q = 0; q < inner; q++) {
          if (d->dtype == SW_DTYPE_F32) ((float *)dst)[(o * ni + k) * inner + q] = ((const float *)src)[(o * len + j) * inner + q];
          else dst[(o * ni + k) * inner + q] = src[(o * len + j) * inner + q];
          if (d->dtype == SW_DTYPE_I64 && src[(o * len + j) * inner + q] == BATCH_DIM) v->symbolic = true;
        }
      }
    return SW_STATUS_OK;
  }
  sw_node in[2];
  sw_op_attrs a;
  sw_op_attrs_default(SW_OP_GATHER, &a);
  a.axis = axis;
  st = materialize(im, d, &in[0]);
  if (!st) st = materialize(im, ix, &in[1]);
  if (!st) st = op(im, SW_OP_GATHER, in, 2, &a, out_name(im), true, NULL);
  return st;
}

static sw_status imp_concat(importer *im) {
  static const char *const ok[] = {"axis", NULL};
  int64_t axis;
  sw_status st = check_attrs(im, ok);
  if (!st) st = attr_int(im, "axis", INT64_MAX, &axis);
  if (st) return st;
  if (axis == INT64_MAX) return node_error(im, SW_STATUS_FORMAT, "Concat needs axis", NULL);
  size_t n = im->node->n_input;
  if (n < 1 || n > SW__MAX_INPUTS) return node_error(im, SW_STATUS_UNSUPPORTED, "Concat of 1 to 8 inputs only", NULL);
  bool all_known = true;
  size_t idx[SW__MAX_INPUTS];
  for (size_t i = 0; i < n; i++) {
    value *x;
    st = input(im, i, true, &x);
    if (st) return st;
    idx[i] = (size_t)(x - im->v);
    all_known &= x->known;
  }
  if (all_known) {
    /* shape arithmetic: 1-D int64 values end to end */
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
      value *x = &im->v[idx[i]];
      if (x->dtype != SW_DTYPE_I64 || x->rank != 1)
        return node_error(im, SW_STATUS_UNSUPPORTED, "Concat of known values: only 1-D int64 ones", NULL);
      total += x->shape[0];
    }
    value *v = NULL;
    st = add_known(im, out_name(im), SW_DTYPE_I64, 1, &total, &v);
    if (st) return st;
    int64_t k = 0;
    for (size_t i = 0; i < n; i++) {
      value *x = &im->v[idx[i]];
      memcpy((int64_t *)v->data + k, x->data, (size_t)x->shape[0] * 8);
      k += x->shape[0];
      v->symbolic |= x->symbolic;
    }
    return SW_STATUS_OK;
  }
  sw_node in[SW__MAX_INPUTS];
  for (size_t i = 0; i < n && !st; i++) st = materialize(im, &im->v[idx[i]], &in[i]);
  if (st) return st;
  sw_op_attrs a;
  sw_op_attrs_default(SW_OP_CONCAT, &a);
  a.axis = axis;
  return op(im, SW_OP_CONCAT, in, (int)n, &a, out_name(im), true, NULL);
}

static sw_status known_float_scalar(importer *im, value *v, const char *what, float *out) {
  if (!v->known || v->dtype != SW_DTYPE_F32 || known_elements(v) != 1)
    return node_error(im, SW_STATUS_UNSUPPORTED, "needs a float scalar known at import time: ", what);
  *out = *(const float *)v->data;
  return SW_STATUS_OK;
}

static sw_status scalar_const(importer *im, const char *suffix, float f, sw_node *out) {
  char *nm = helper_name(im, suffix);
  if (!nm) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = sw_graph_const(im->g, nm, SW_DTYPE_F32, 0, NULL, &f, out);
  sw_free(nm);
  return st;
}

/* Helper ops get names "OUTPUT/suffix"; the last one is the output itself. */
static sw_status helper_op(importer *im, sw_op_type type, sw_node a, sw_node b, const char *suffix, sw_node *out) {
  char *nm = suffix ? helper_name(im, suffix) : NULL;
  if (suffix && !nm) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_node in[2] = {a, b};
  sw_status st = op(im, type, in, b >= 0 ? 2 : 1, NULL, suffix ? nm : out_name(im), !suffix, out);
  sw_free(nm);
  return st;
}

/* Clip(x, lo, hi) = relu(x - lo) + lo - relu(x - hi), each side only when given. */
static sw_status imp_clip(importer *im) {
  static const char *const ok[] = {"min", "max", NULL};
  value *x, *lo_v, *hi_v;
  float lo = -INFINITY, hi = INFINITY;
  sw_status st = check_attrs(im, ok);
  if (!st) st = attr_float(im, "min", -INFINITY, &lo);
  if (!st) st = attr_float(im, "max", INFINITY, &hi);
  if (!st) st = input(im, 0, true, &x);
  if (!st) st = input(im, 1, false, &lo_v);
  if (!st && lo_v) st = known_float_scalar(im, lo_v, "min", &lo);
  if (!st) st = input(im, 2, false, &hi_v);
  if (!st && hi_v) st = known_float_scalar(im, hi_v, "max", &hi);
  if (st) return st;
  sw_node xn = -1, c = -1, t = -1, r = -1;
  st = materialize(im, x, &xn);
  if (st) return st;
  if (isinf(lo) && isinf(hi)) return imp_identity(im);
  if (!isinf(lo)) {
    bool last = isinf(hi);
    st = scalar_const(im, "min", lo, &c);
    if (!st) st = helper_op(im, SW_OP_SUB, xn, c, "x_min", &t);
    if (!st) st = helper_op(im, SW_OP_RELU, t, -1, "relu_min", &t);
    if (!st) st = helper_op(im, SW_OP_ADD, t, c, last ? NULL : "lower", &r);
    if (st || last) return st;
    xn = r;
  }
  st = scalar_const(im, "max", hi, &c);
  if (!st) st = helper_op(im, SW_OP_SUB, xn, c, "x_max", &t);
  if (!st) st = helper_op(im, SW_OP_RELU, t, -1, "relu_max", &t);
  if (!st) st = helper_op(im, SW_OP_SUB, xn, t, NULL, &r);
  return st;
}

static sw_status imp_sum(importer *im) {
  sw_status st = check_attrs(im, NULL);
  size_t n = im->node->n_input;
  if (st) return st;
  if (n < 1) return node_error(im, SW_STATUS_FORMAT, "Sum needs inputs", NULL);
  if (n == 1) return imp_identity(im);
  sw_node acc = -1;
  for (size_t i = 0; i < n && !st; i++) {
    value *x;
    sw_node xn = -1;
    st = input(im, i, true, &x);
    if (!st) st = materialize(im, x, &xn);
    if (st) return st;
    if (i == 0) {
      acc = xn;
      continue;
    }
    char suffix[32];
    snprintf(suffix, sizeof suffix, "sum%zu", i);
    st = helper_op(im, SW_OP_ADD, acc, xn, i + 1 == n ? NULL : suffix, &acc);
  }
  return st;
}

/* ReduceMean over the spatial axes of NCHW (GlobalAveragePool) or over the last axis
 * (MatMul with a column of 1/n). */
static sw_status imp_reduce_mean(importer *im) {
  static const char *const ok[] = {"axes", "keepdims", NULL};
  value *x;
  int64_t axes[SW_NN_MAX_RANK], keep;
  size_t n;
  sw_status st = check_attrs(im, ok);
  if (!st) st = attr_ints(im, "axes", axes, SW_NN_MAX_RANK, &n);
  if (!st) st = attr_int(im, "keepdims", 1, &keep);
  if (!st) st = input(im, 0, true, &x);
  if (st) return st;
  if (im->node->n_input > 1) return node_error(im, SW_STATUS_UNSUPPORTED, "axes as an input (opset 18) is not supported", NULL);
  sw_node xn = -1;
  st = materialize(im, x, &xn);
  if (st) return st;
  int rank = sw_graph_rank(im->g, xn);
  const int64_t *shape = sw_graph_shape(im->g, xn);
  for (size_t i = 0; i < n; i++)
    if (axes[i] < 0) axes[i] += rank;
  bool spatial = rank == 4 && n == 2 && ((axes[0] == 2 && axes[1] == 3) || (axes[0] == 3 && axes[1] == 2));
  bool last = n == 1 && axes[0] == rank - 1 && rank >= 2;
  if (!spatial && !last)
    return node_error(im, SW_STATUS_UNSUPPORTED, "ReduceMean over these axes is not supported (the spatial axes of NCHW or the last axis are)", NULL);
  sw_node r;
  if (spatial) {
    st = helper_op(im, SW_OP_GLOBAL_AVERAGE_POOL, xn, -1, keep ? NULL : "pool", &r);
  } else {
    int64_t len = shape[rank - 1], wshape[2] = {len, 1};
    float *w = sw_malloc((size_t)(len ? len : 1) * sizeof *w);
    if (!w) return sw_error(SW_STATUS_NOMEM, "out of memory");
    for (int64_t i = 0; i < len; i++) w[i] = 1.0f / (float)len;
    char *nm = helper_name(im, "mean_weights");
    sw_node wn;
    st = nm ? sw_graph_const(im->g, nm, SW_DTYPE_F32, 2, wshape, w, &wn) : sw_error(SW_STATUS_NOMEM, "out of memory");
    sw_free(nm);
    sw_free(w);
    if (!st) st = helper_op(im, SW_OP_MATMUL, xn, wn, keep ? NULL : "mean", &r);
  }
  if (st || keep) return st;
  int64_t target[SW_NN_MAX_RANK];
  size_t k = 0;
  for (int i = 0; i < rank; i++) {
    bool drop = spatial ? i >= 2 : i == rank - 1;
    if (!drop) target[k++] = i == 0 && im->g->nodes[r].batched ? BATCH_DIM : shape[i];
  }
  value tmp = {.node = r};
  return reshape_to(im, &tmp, target, k, out_name(im), true);
}

/* Window attributes of Conv and the pools: kernel_shape, strides, pads, dilations. */
static bool window_sizes_ok(const int64_t *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (v[i] < 0 || v[i] > (1 << 16)) return false;
  return true;
}

static sw_status window_attrs(importer *im, sw_op_attrs *a, int spatial, bool pool) {
  static const char *const names[] = {"kernel_shape", "strides", "dilations", "pads"};
  int64_t v[8];
  size_t n;
  for (size_t i = 0; i < 4; i++) {
    sw_status st = attr_ints(im, names[i], v, 8, &n);
    if (st) return st;
    if (!window_sizes_ok(v, n)) return node_error(im, SW_STATUS_UNSUPPORTED, "a value out of [0, 65536] in ", names[i]);
  }
  static const char *const notset[] = {"NOTSET", "", NULL};
  sw_status st = attr_string_is(im, "auto_pad", notset);
  if (st) return st;
  if (spatial != 1 && spatial != 2) return node_error(im, SW_STATUS_UNSUPPORTED, "only 1-D and 2-D windows are supported", NULL);
  int off = 2 - spatial; /* 1-D uses the second slot */
  st = attr_ints(im, "kernel_shape", v, 2, &n);
  if (st) return st;
  if (pool && n != (size_t)spatial) return node_error(im, SW_STATUS_FORMAT, "kernel_shape must list every spatial axis", NULL);
  for (size_t i = 0; i < n && pool; i++) a->kernel[off + i] = v[i];
  if (!pool && n && n != (size_t)spatial) return node_error(im, SW_STATUS_FORMAT, "kernel_shape must list every spatial axis", NULL);
  st = attr_ints(im, "strides", v, 2, &n);
  if (st) return st;
  if (n && n != (size_t)spatial) return node_error(im, SW_STATUS_FORMAT, "strides must list every spatial axis", NULL);
  for (size_t i = 0; i < n; i++) a->stride[off + i] = v[i];
  st = attr_ints(im, "dilations", v, 2, &n);
  if (st) return st;
  if (n && n != (size_t)spatial) return node_error(im, SW_STATUS_FORMAT, "dilations must list every spatial axis", NULL);
  for (size_t i = 0; i < n; i++) a->dilation[off + i] = v[i];
  st = attr_ints(im, "pads", v, 4, &n);
  if (st) return st;
  if (n && n != (size_t)(2 * spatial)) return node_error(im, SW_STATUS_FORMAT, "pads must list both ends of every spatial axis", NULL);
  if (n == 4) memcpy(a->pad, v, sizeof a->pad);
  else if (n == 2) a->pad[1] = v[0], a->pad[3] = v[1];
  return SW_STATUS_OK;
}

static int spatial_rank(importer *im, value *x) {
  int rank;
  const int64_t *shape;
  value_shape(im, x, &rank, &shape);
  return rank - 2;
}

static sw_status imp_conv(importer *im) {
  static const char *const ok[] = {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", NULL};
  value *x, *w, *b;
  int64_t group;
  sw_status st = check_attrs(im, ok);
  if (!st) st = attr_int(im, "group", 1, &group);
  if (!st && group != 1) return node_error(im, SW_STATUS_UNSUPPORTED, "grouped convolution is not supported", NULL);
  if (!st) st = input(im, 0, true, &x);
  if (!st) st = input(im, 1, true, &w);
  if (!st) st = input(im, 2, false, &b);
  if (st) return st;
  sw_op_attrs a;
  sw_op_attrs_default(SW_OP_CONV, &a);
  st = window_attrs(im, &a, spatial_rank(im, x), false);
  if (st) return st;
  sw_node in[3] = {-1, -1, -1};
  st = materialize(im, x, &in[0]);
  if (!st) st = materialize(im, w, &in[1]);
  if (!st && b) st = materialize(im, b, &in[2]);
  if (!st) st = op(im, SW_OP_CONV, in, 3, &a, out_name(im), true, NULL);
  return st;
}

static sw_status imp_pool(importer *im, sw_op_type type) {
  static const char *const ok_max[] = {"kernel_shape", "strides", "pads", "dilations", "ceil_mode", "storage_order", "auto_pad", NULL};
  static const char *const ok_avg[] = {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad", "auto_pad", NULL};
  value *x;
  int64_t ceil_mode, storage, cip;
  sw_status st = check_attrs(im, type == SW_OP_MAX_POOL ? ok_max : ok_avg);
  if (!st) st = attr_int(im, "ceil_mode", 0, &ceil_mode);
  if (!st) st = attr_int(im, "storage_order", 0, &storage);
  if (!st) st = attr_int(im, "count_include_pad", 0, &cip);
  if (st) return st;
  if (ceil_mode || storage) return node_error(im, SW_STATUS_UNSUPPORTED, "ceil_mode and storage_order must be 0", NULL);
  st = input(im, 0, true, &x);
  if (st) return st;
  sw_op_attrs a;
  sw_op_attrs_default(type, &a);
  a.count_include_pad = cip;
  st = window_attrs(im, &a, spatial_rank(im, x), true);
  sw_node in;
  if (!st) st = materialize(im, x, &in);
  if (!st) st = op(im, type, &in, 1, &a, out_name(im), true, NULL);
  return st;
}

/* Pad with zeros on the spatial axes of NC(H)W: a convolution with an identity kernel,
 * whose zero padding is exact. */
static sw_status imp_pad(importer *im) {
  static const char *const ok[] = {"mode", "pads", "value", NULL};
  static const char *const constant[] = {"constant", NULL};
  value *x, *pv, *cv;
  int64_t pads[2 * SW_NN_MAX_RANK];
  size_t n = 0;
  float fill = 0;
  sw_status st = check_attrs(im, ok);
  if (!st) st = attr_string_is(im, "mode", constant);
  if (!st) st = attr_float(im, "value", 0, &fill);
  if (!st) st = input(im, 0, true, &x);
  if (!st) st = input(im, 1, false, &pv);
  if (!st && pv) st = known_ints(im, pv, "pads", pads, 2 * SW_NN_MAX_RANK, &n);
  if (!st && !pv) st = attr_ints(im, "pads", pads, 2 * SW_NN_MAX_RANK, &n);
  if (!st) st = input(im, 2, false, &cv);
  if (!st && cv) st = known_float_scalar(im, cv, "constant_value", &fill);
  if (st) return st;
  if (fill != 0) return node_error(im, SW_STATUS_UNSUPPORTED, "Pad with a value other than 0", NULL);
  sw_node xn = -1;
  st = materialize(im, x, &xn);
  if (st) return st;
  int rank = sw_graph_rank(im->g, xn);
  if (n != (size_t)(2 * rank)) return node_error(im, SW_STATUS_FORMAT, "pads must list both ends of every axis", NULL);
  if (rank != 3 && rank != 4) return node_error(im, SW_STATUS_UNSUPPORTED, "Pad of NCHW or NCW input only", NULL);
  for (int i = 0; i < 2; i++)
    if (pads[i] || pads[rank + i]) return node_error(im, SW_STATUS_UNSUPPORTED, "Pad of the batch or channel axis", NULL);
  for (size_t i = 0; i < n; i++)
    if (pads[i] < 0 || pads[i] > (1 << 16)) return node_error(im, SW_STATUS_UNSUPPORTED, "pads out of [0, 65536] (negative ones crop)", NULL);
  if (sw_graph_dtype(im->g, xn) != SW_DTYPE_F32) return node_error(im, SW_STATUS_UNSUPPORTED, "Pad of a float input only", NULL);
  int64_t c = sw_graph_shape(im->g, xn)[1];
  if (c > 4096) return node_error(im, SW_STATUS_UNSUPPORTED, "Pad of more than 4096 channels", NULL);
  int64_t wshape[4] = {c, c, 1, 1};
  float *w = sw_calloc((size_t)(c > 0 ? c * c : 1), sizeof *w);
  if (!w) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (int64_t i = 0; i < c; i++) w[i * c + i] = 1;
  char *nm = helper_name(im, "identity");
  sw_node wn;
  st = nm ? sw_graph_const(im->g, nm, SW_DTYPE_F32, rank, wshape, w, &wn) : sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_free(nm);
  sw_free(w);
  if (st) return st;
  sw_op_attrs a;
  sw_op_attrs_default(SW_OP_CONV, &a);
  if (rank == 4) {
    a.pad[0] = pads[2], a.pad[1] = pads[3], a.pad[2] = pads[6], a.pad[3] = pads[7];
  } else {
    a.pad[1] = pads[2], a.pad[3] = pads[5];
  }
  sw_node in[3] = {xn, wn, -1};
  return op(im, SW_OP_CONV, in, 3, &a, out_name(im), true, NULL);
}

static sw_status dtype_of_onnx(int64_t t, sw_dtype *out) {
  if (t == ONNX_FLOAT || t == ONNX_DOUBLE) *out = SW_DTYPE_F32;
  else if (t == ONNX_INT64 || t == ONNX_INT32) *out = SW_DTYPE_I64;
  else return SW_STATUS_UNSUPPORTED;
  return SW_STATUS_OK;
}

static sw_status imp_cast(importer *im) {
  static const char *const ok[] = {"to", "saturate", NULL};
  value *x;
  int64_t to;
  sw_dtype dt;
  sw_status st = check_attrs(im, ok);
  if (!st) st = attr_int(im, "to", -1, &to);
  if (!st) st = input(im, 0, true, &x);
  if (st) return st;
  if (dtype_of_onnx(to, &dt)) return node_error(im, SW_STATUS_UNSUPPORTED, "Cast to a type other than float or int64", NULL);
  if (x->known) {
    size_t xi = (size_t)(x - im->v);
    value *v = NULL;
    st = add_known(im, out_name(im), dt, x->rank, x->shape, &v);
    if (st) return st;
    x = &im->v[xi];
    v->symbolic = x->symbolic;
    for (int64_t i = 0; i < known_elements(x); i++) {
      if (x->dtype == dt) ((int64_t *)v->data)[i] = ((const int64_t *)x->data)[i];
      else if (dt == SW_DTYPE_F32) ((float *)v->data)[i] = (float)((const int64_t *)x->data)[i];
      else {
        float f = ((const float *)x->data)[i];
        if (!(f > -9.2e18f && f < 9.2e18f)) return node_error(im, SW_STATUS_RANGE, "a value out of int64's range", NULL);
        ((int64_t *)v->data)[i] = (int64_t)f;
      }
    }
    if (v->symbolic && dt != SW_DTYPE_I64) return node_error(im, SW_STATUS_UNSUPPORTED, "a shape cast to float", NULL);
    return SW_STATUS_OK;
  }
  sw_op_attrs a;
  sw_op_attrs_default(SW_OP_CAST, &a);
  a.to = dt;
  sw_node in;
  st = materialize(im, x, &in);
  if (!st) st = op(im, SW_OP_CAST, &in, 1, &a, out_name(im), true, NULL);
  return st;
}

static sw_status imp_batch_norm(importer *im) {
  static const char *const ok[] = {"epsilon", "momentum", "training_mode", "spatial", NULL};
  int64_t training, spatial;
  sw_op_attrs a;
  sw_op_attrs_default(SW_OP_BATCH_NORM, &a);
  sw_status st = check_attrs(im, ok);
  if (!st) st = attr_float(im, "epsilon", 1e-5f, &a.epsilon);
  if (!st) st = attr_float(im, "momentum", 0.9f, &a.momentum);
  if (!st) st = attr_int(im, "training_mode", 0, &training);
  if (!st) st = attr_int(im, "spatial", 1, &spatial);
  if (!st && (training || spatial != 1)) return node_error(im, SW_STATUS_UNSUPPORTED, "training_mode and spatial=0 are not supported", NULL);
  sw_node in[5];
  for (size_t i = 0; i < 5 && !st; i++) {
    value *x;
    st = input(im, i, true, &x);
    if (!st) st = materialize(im, x, &in[i]);
  }
  if (!st) st = op(im, SW_OP_BATCH_NORM, in, 5, &a, out_name(im), true, NULL);
  return st;
}

/* Engine ops whose ONNX form is the op itself: their inputs and attributes. */
static sw_status imp_plain(importer *im, sw_op_type type) {
  sw_op_attrs a;
  sw_op_attrs_default(type, &a);
  sw_status st = SW_STATUS_OK;
  switch (type) {
    case SW_OP_GEMM: {
      static const char *const ok[] = {"alpha", "beta", "transA", "transB", NULL};
      st = check_attrs(im, ok);
      if (!st) st = attr_float(im, "alpha", 1, &a.alpha);
      if (!st) st = attr_float(im, "beta", 1, &a.beta);
      if (!st) st = attr_int(im, "transA", 0, &a.trans_a);
      if (!st) st = attr_int(im, "transB", 0, &a.trans_b);
      break;
    }
    case SW_OP_SOFTMAX:
    case SW_OP_LOG_SOFTMAX:
    case SW_OP_FLATTEN: {
      static const char *const ok[] = {"axis", NULL};
      /* before opset 13 Softmax's axis defaulted to 1 and flattened the axes after it:
       * the same as the last axis only when axis is the last, which the op checks */
      int64_t def = type != SW_OP_FLATTEN && im->opset < 13 ? 1 : a.axis;
      st = check_attrs(im, ok);
      if (!st) st = attr_int(im, "axis", def, &a.axis);
      break;
    }
    case SW_OP_LAYER_NORM: {
      static const char *const ok[] = {"axis", "epsilon", "stash_type", NULL};
      st = check_attrs(im, ok);
      if (!st) st = attr_int(im, "axis", -1, &a.axis);
      if (!st) st = attr_float(im, "epsilon", 1e-5f, &a.epsilon);
      break;
    }
    case SW_OP_GELU: {
      static const char *const ok[] = {"approximate", NULL};
      static const char *const none[] = {"none", NULL};
      st = check_attrs(im, ok);
      if (!st) st = attr_string_is(im, "approximate", none);
      break;
    }
    case SW_OP_TRANSPOSE: {
      static const char *const ok[] = {"perm", NULL};
      size_t n = 0;
      st = check_attrs(im, ok);
      if (!st) st = attr_ints(im, "perm", a.perm, SW_NN_MAX_RANK, &n);
      a.perm_rank = (int)n;
      break;
    }
    default: st = check_attrs(im, NULL); break;
  }
  if (st) return st;
  int n_in = sw__op_inputs(type);
  if ((size_t)n_in < im->node->n_input) return node_error(im, SW_STATUS_FORMAT, "too many inputs", NULL);
  sw_node in[SW__MAX_INPUTS];
  for (int i = 0; i < n_in; i++) {
    value *x;
    bool optional = (type == SW_OP_GEMM && i == 2) || (type == SW_OP_LAYER_NORM && i == 2);
    st = input(im, (size_t)i, !optional, &x);
    if (st) return st;
    in[i] = -1;
    if (x) st = materialize(im, x, &in[i]);
    if (st) return st;
  }
  return op(im, type, in, n_in, &a, out_name(im), true, NULL);
}

static sw_status import_node(importer *im) {
  const char *t = im->node->op_type ? im->node->op_type : "";
  if (im->node->domain && im->node->domain[0] && strcmp(im->node->domain, "ai.onnx"))
    return node_error(im, SW_STATUS_UNSUPPORTED, "unsupported operator domain ", im->node->domain);
  bool dropout = !strcmp(t, "Dropout");
  sw_status st = need_outputs(im, 1);
  if (st) return st;
  if (!strcmp(t, "Identity")) {
    st = check_attrs(im, NULL);
    return st ? st : imp_identity(im);
  }
  if (dropout) {
    static const char *const ok[] = {"ratio", "seed", NULL};
    st = check_attrs(im, ok);
    return st ? st : imp_identity(im);
  }
  if (!strcmp(t, "Constant")) return imp_constant(im);
  if (!strcmp(t, "Shape")) return imp_shape(im);
  if (!strcmp(t, "Unsqueeze")) return imp_squeeze(im, true);
  if (!strcmp(t, "Squeeze")) return imp_squeeze(im, false);
  if (!strcmp(t, "Reshape")) return imp_reshape(im);
  if (!strcmp(t, "Gather")) return imp_gather(im);
  if (!strcmp(t, "Concat")) return imp_concat(im);
  if (!strcmp(t, "Clip")) return imp_clip(im);
  if (!strcmp(t, "Sum")) return imp_sum(im);
  if (!strcmp(t, "ReduceMean")) return imp_reduce_mean(im);
  if (!strcmp(t, "Pad")) return imp_pad(im);
  if (!strcmp(t, "Cast")) return imp_cast(im);
  if (!strcmp(t, "Conv")) return imp_conv(im);
  if (!strcmp(t, "MaxPool")) return imp_pool(im, SW_OP_MAX_POOL);
  if (!strcmp(t, "AveragePool")) return imp_pool(im, SW_OP_AVERAGE_POOL);
  if (!strcmp(t, "BatchNormalization")) return imp_batch_norm(im);
  for (int k = SW_OP_MATMUL; k < SW_OP_COUNT_; k++) {
    sw_op_type type = (sw_op_type)k;
    if (type == SW_OP_SOFTMAX_CROSS_ENTROPY || type == SW_OP_CONST) continue;
    if (sw_op_onnx_type(type)[0] && !strcmp(sw_op_onnx_type(type), t)) return imp_plain(im, type);
  }
  return node_error(im, SW_STATUS_UNSUPPORTED, "unsupported operator ", t);
}

/* ---- the model ------------------------------------------------------------------------- */

static sw_status import_input(importer *im, const Onnx__ValueInfoProto *vi) {
  const char *name = vi->name ? vi->name : "";
  const Onnx__TypeProto *tp = vi->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return sw_error(SW_STATUS_UNSUPPORTED, "ONNX input '%s': only tensor inputs are supported", name);
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  sw_dtype dt;
  if (tt->elem_type != ONNX_FLOAT && tt->elem_type != ONNX_INT64)
    return sw_error(SW_STATUS_UNSUPPORTED, "ONNX input '%s': element type %d is not supported (float and int64 are)", name, (int)tt->elem_type);
  dtype_of_onnx(tt->elem_type, &dt);
  if (!tt->shape || tt->shape->n_dim < 1 || tt->shape->n_dim > SW_NN_MAX_RANK)
    return sw_error(SW_STATUS_UNSUPPORTED, "ONNX input '%s': needs a shape of rank 1 to %d with the batch first", name, SW_NN_MAX_RANK);
  int64_t shape[SW_NN_MAX_RANK];
  int64_t per = 1;
  for (size_t i = 0; i < tt->shape->n_dim; i++) {
    const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
    bool fixed = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    if (i == 0) {
      shape[0] = -1; /* symbolic, 0 or a fixed size: the batch */
      continue;
    }
    if (!fixed || d->dim_value < 1)
      return sw_error(SW_STATUS_UNSUPPORTED, "ONNX input '%s': dimension %zu must be a fixed size", name, i);
    shape[i] = d->dim_value;
    if (__builtin_mul_overflow(per, shape[i], &per) || per > ((int64_t)1 << 28))
      return sw_error(SW_STATUS_UNSUPPORTED, "ONNX input '%s': too many elements per example", name);
  }
  value *v = NULL;
  sw_status st = add_value(im, name, &v);
  if (!st) st = sw_graph_input(im->g, name, dt, (int)tt->shape->n_dim, shape, &v->node);
  return st;
}

static sw_status import_model(importer *im, const Onnx__ModelProto *m, const char *src, sw_node **outputs, size_t *n_outputs,
                              json_t **metadata) {
  const Onnx__GraphProto *gp = m->graph;
  if (!gp) return sw_error(SW_STATUS_FORMAT, "%s: the ONNX model has no graph", src);
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[i];
    bool std = !o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx");
    if (std && o->has_version && (o->version < 7 || o->version > 21))
      return sw_error(SW_STATUS_UNSUPPORTED, "%s: ONNX opset %lld is not supported (7 to 21 are)", src, (long long)o->version);
    if (std && o->has_version) im->opset = o->version;
  }
  if (gp->n_sparse_initializer) return sw_error(SW_STATUS_UNSUPPORTED, "%s: sparse initializers are not supported", src);
  sw_status st = SW_STATUS_OK;
  for (size_t i = 0; i < gp->n_initializer && !st; i++) {
    value *v = NULL;
    const char *nm = gp->initializer[i]->name;
    if (!nm || !nm[0]) return sw_error(SW_STATUS_FORMAT, "%s: an initializer without a name", src);
    st = tensor_value(im, gp->initializer[i], nm, &v);
  }
  for (size_t i = 0; i < gp->n_input && !st; i++) {
    if (!gp->input[i]->name) return sw_error(SW_STATUS_FORMAT, "%s: an input without a name", src);
    value *v = find(im, gp->input[i]->name);
    if (v && v->known) continue; /* an initializer listed as an input (IR < 4) */
    st = import_input(im, gp->input[i]);
  }
  for (size_t i = 0; i < gp->n_node && !st; i++) {
    im->node = gp->node[i];
    const char *nm = im->node->name && im->node->name[0] ? im->node->name
                   : im->node->n_output && im->node->output[0] ? im->node->output[0] : "";
    snprintf(im->nodename, sizeof im->nodename, "%s", nm);
    if (!im->node->op_type) {
      st = sw_error(SW_STATUS_FORMAT, "%s: ONNX node '%s' has no op_type", src, nm);
      break;
    }
    st = import_node(im);
  }
  if (st) return st;
  if (gp->n_output < 1) return sw_error(SW_STATUS_FORMAT, "%s: the ONNX graph has no outputs", src);
  *outputs = sw_calloc(gp->n_output, sizeof **outputs);
  if (!*outputs) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < gp->n_output; i++) {
    const char *nm = gp->output[i]->name ? gp->output[i]->name : "";
    value *v = find(im, nm);
    if (!v) return sw_error(SW_STATUS_FORMAT, "%s: the ONNX graph output '%s' is never computed", src, nm);
    if (v->node < 0) {
      if (v->symbolic) return sw_error(SW_STATUS_UNSUPPORTED, "%s: output '%s' is a shape that depends on the batch", src, nm);
      st = sw_graph_const(im->g, v->name, v->dtype, v->rank, v->shape, v->data, &v->node);
      if (st) return st;
    }
    (*outputs)[i] = v->node;
  }
  *n_outputs = gp->n_output;
  if (metadata && m->n_metadata_props) {
    *metadata = json_object();
    if (!*metadata) return sw_error(SW_STATUS_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_metadata_props; i++) {
      const Onnx__StringStringEntryProto *e = m->metadata_props[i];
      if (e->key && e->value) json_object_set_new(*metadata, e->key, json_string(e->value));
    }
  }
  return SW_STATUS_OK;
}

sw_status sw_onnx_import_mem(const uint8_t *data, size_t len, const char *name, sw_graph **out, sw_node **outputs,
                             size_t *n_outputs, json_t **metadata) {
  *out = NULL;
  *outputs = NULL;
  *n_outputs = 0;
  if (metadata) *metadata = NULL;
  const char *src = name ? name : "ONNX model";
  importer im = {.opset = 13};
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, data);
  sw_status st = m ? SW_STATUS_OK : sw_error(SW_STATUS_FORMAT, "%s: not an ONNX model (the protobuf does not parse: truncated or malformed)", src);
  if (!st) st = sw_graph_new(&im.g);
  if (!st) st = import_model(&im, m, src, outputs, n_outputs, metadata);
  for (size_t i = 0; !st && i < *n_outputs; i++) sw_graph_mark_output(im.g, (*outputs)[i]);
  if (st) {
    if (!strstr(sw_last_error(), src)) sw_error_prefix(st, "%s: ", src);
    sw_graph_free(im.g);
    im.g = NULL;
    sw_free(*outputs);
    *outputs = NULL;
    *n_outputs = 0;
    if (metadata) {
      json_decref(*metadata);
      *metadata = NULL;
    }
  }
  *out = im.g;
  for (size_t i = 0; i < im.n; i++) {
    sw_free(im.v[i].name);
    sw_free(im.v[i].data);
  }
  sw_free(im.v);
  if (m) onnx__model_proto__free_unpacked(m, NULL);
  return st;
}

sw_status sw_onnx_import(const char *path, sw_graph **out, sw_node **outputs, size_t *n_outputs, json_t **metadata) {
  uint8_t *data = NULL;
  size_t len = 0;
  *out = NULL;
  *outputs = NULL;
  *n_outputs = 0;
  if (metadata) *metadata = NULL;
  sw_status st = sw_read_file(path, &data, &len);
  if (!st) st = sw_onnx_import_mem(data, len, path, out, outputs, n_outputs, metadata);
  sw_free(data);
  return st;
}
