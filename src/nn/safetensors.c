/* safetensors, Hugging Face's tensor file format: the writer behind model.safetensors
 * and the reader that checks every byte of a file (which may come from anywhere) before
 * any of it is trusted. Tensors are read in place from one copy of the file, with the
 * data section 8-aligned so a tensor's data can be used as float * or int64_t *.
 *
 *   offset      size  field
 *   0           8     N, the header's length, u64 little-endian (N <= 100,000,000)
 *   8           N     the header: a UTF-8 JSON object that starts with '{'
 *                       {"__metadata__": {"key": "value", ...},         (optional)
 *                        "NAME": {"dtype": "F32", "shape": [2, 3],
 *                                 "data_offsets": [BEGIN, END]}, ...}
 *                     padded with spaces (0x20); we pad N to a multiple of 8
 *   8+N         D     the data section: each tensor little-endian, C order, at
 *                     [BEGIN, END) counted from 8+N. The tensors tile it exactly:
 *                     sorted by offsets, each begins where the previous one ended,
 *                     the first at 0 and the last at D (no holes, no overlap), and
 *                     END - BEGIN = product(shape) * element size (a rank-0
 *                     tensor, a scalar, has one element).
 *
 * We write the header with the names sorted (byte order), "__metadata__" first and its
 * keys sorted, each entry as dtype, shape, data_offsets (the order Hugging Face's
 * serializer uses), and the data by element size, largest first, then by name: also
 * Hugging Face's layout, which keeps every tensor aligned to its element size. So the
 * bytes depend only on the set of tensors, not on the order they were given in. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "slipway/nn.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads and writes tensor data in host order, which must be little-endian"
#endif

#define HEADER_MAX 100000000u /* Hugging Face's MAX_HEADER_SIZE */
#define META_KEY "__metadata__"

struct sw_safetensors {
  uint8_t *file; /* the whole file; the data section starts 8-aligned */
  size_t count;
  sw_named_tensor *tensors; /* sorted by name; names point into `header` */
  json_t *header;
  const json_t *metadata; /* inside header, or NULL */
  uint8_t *realigned;     /* copies of tensors whose offset breaks their alignment */
};

static const char *st_dtype_name(sw_dtype t) {
  switch (t) {
    case SW_DTYPE_F32: return "F32";
    case SW_DTYPE_I64: return "I64";
    case SW_DTYPE_U8: return "U8";
  }
  return "?";
}

/* The other dtypes of the format: a file may hold them, we cannot (UNSUPPORTED rather
 * than FORMAT). */
static const char *const other_dtypes[] = {"BOOL",    "I8",  "I16",     "U16",     "F16",     "BF16",
                                           "I32",     "U32", "F64",     "U64",     "F8_E5M2", "F8_E4M3",
                                           "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64",     NULL};

static void put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Bytes of a tensor, false on overflow of uint64_t. */
static bool tensor_bytes(sw_dtype dtype, int rank, const int64_t *shape, uint64_t *out) {
  uint64_t n = sw_dtype_size(dtype);
  for (int d = 0; d < rank; d++) {
    uint64_t dim = (uint64_t)shape[d];
    if (dim != 0 && n > UINT64_MAX / dim) return false;
    n *= dim;
  }
  *out = n;
  return true;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct {
  const sw_named_tensor *t;
  uint64_t begin, bytes; /* in the data section */
} placed;

static int by_name(const void *a, const void *b) {
  return strcmp(((const placed *)a)->t->name, ((const placed *)b)->t->name);
}

/* Data order: larger elements first (keeps each tensor aligned), then by name. */
static int by_layout(const void *a, const void *b) {
  const sw_named_tensor *x = ((const placed *)a)->t, *y = ((const placed *)b)->t;
  size_t sx = sw_dtype_size(x->dtype), sy = sw_dtype_size(y->dtype);
  if (sx != sy) return sx > sy ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int by_string(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static sw_status check_tensor(const sw_named_tensor *t, uint64_t *bytes) {
  if (!t->name) return sw_error(SW_STATUS_INVALID, "a tensor without a name");
  if (!strcmp(t->name, META_KEY))
    return sw_error(SW_STATUS_INVALID, "'%s' is reserved and cannot name a tensor", META_KEY);
  if (t->dtype != SW_DTYPE_F32 && t->dtype != SW_DTYPE_I64 && t->dtype != SW_DTYPE_U8)
    return sw_error(SW_STATUS_INVALID, "tensor '%s': unknown dtype %d", t->name, (int)t->dtype);
  if (t->rank < 0 || t->rank > SW_NN_MAX_RANK)
    return sw_error(SW_STATUS_INVALID, "tensor '%s': rank %d (0 to %d)", t->name, t->rank, SW_NN_MAX_RANK);
  for (int d = 0; d < t->rank; d++)
    if (t->shape[d] < 0)
      return sw_error(SW_STATUS_INVALID, "tensor '%s': dimension %d is %lld", t->name, d,
                      (long long)t->shape[d]);
  if (!tensor_bytes(t->dtype, t->rank, t->shape, bytes) || *bytes > (uint64_t)INT64_MAX)
    return sw_error(SW_STATUS_INVALID, "tensor '%s': its size overflows", t->name);
  if (*bytes > 0 && !t->data) return sw_error(SW_STATUS_INVALID, "tensor '%s': no data", t->name);
  return SW_STATUS_OK;
}

/* Adds "__metadata__" to h with its keys sorted, so the bytes do not depend on the
 * order the caller built the object in. Empty metadata is left out. */
static sw_status add_metadata(json_t *h, const json_t *metadata) {
  if (!metadata) return SW_STATUS_OK;
  if (!json_is_object(metadata)) return sw_error(SW_STATUS_INVALID, "metadata is not a JSON object");
  size_t nk = json_object_size(metadata), k = 0;
  if (nk == 0) return SW_STATUS_OK;
  sw_status st = SW_STATUS_OK;
  const char **keys = sw_malloc(nk * sizeof *keys);
  json_t *m = json_object();
  if (!keys || !m) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)metadata, key, v) {
    if (!json_is_string(v)) {
      st = sw_error(SW_STATUS_INVALID, "metadata '%s' is not a string (safetensors holds strings)", key);
      goto out;
    }
    keys[k++] = key;
  }
  qsort(keys, nk, sizeof *keys, by_string);
  for (k = 0; k < nk; k++) {
    const json_t *value = json_object_get(metadata, keys[k]);
    json_t *copy = json_stringn(json_string_value(value), json_string_length(value));
    if (!copy || json_object_set_new(m, keys[k], copy) != 0) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
  }
  if (json_object_set(h, META_KEY, m) != 0) st = sw_error(SW_STATUS_NOMEM, "out of memory");
out:
  json_decref(m);
  sw_free(keys);
  return st;
}

/* {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}, or NULL out of memory. */
static json_t *header_entry(const placed *p) {
  json_t *entry = json_object(), *shape = json_array(), *offsets = json_array();
  bool ok = entry && shape && offsets;
  for (int d = 0; ok && d < p->t->rank; d++)
    ok = json_array_append_new(shape, json_integer(p->t->shape[d])) == 0;
  ok = ok && json_array_append_new(offsets, json_integer((json_int_t)p->begin)) == 0 &&
       json_array_append_new(offsets, json_integer((json_int_t)(p->begin + p->bytes))) == 0 &&
       json_object_set_new(entry, "dtype", json_string(st_dtype_name(p->t->dtype))) == 0 &&
       json_object_set(entry, "shape", shape) == 0 && json_object_set(entry, "data_offsets", offsets) == 0;
  json_decref(shape);
  json_decref(offsets);
  if (ok) return entry;
  json_decref(entry);
  return NULL;
}

sw_status sw_safetensors_write(const char *path, const sw_named_tensor *tensors, size_t n,
                               const json_t *metadata) {
  sw_status st = SW_STATUS_OK;
  placed *order = NULL;
  json_t *h = NULL;
  char *text = NULL;
  uint8_t *head = NULL;
  sw_atomic_file *af = NULL;
  if (n > 0 && !tensors) {
    st = sw_error(SW_STATUS_INVALID, "%zu tensors given as NULL", n);
    goto out;
  }
  order = sw_malloc((n ? n : 1) * sizeof *order);
  h = json_object();
  if (!order || !h) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    order[i].t = &tensors[i];
    st = check_tensor(&tensors[i], &order[i].bytes);
    if (st) goto out;
  }
  /* place the data */
  qsort(order, n, sizeof *order, by_layout);
  uint64_t at = 0;
  for (size_t i = 0; i < n; i++) {
    if (order[i].bytes > (uint64_t)INT64_MAX - at) {
      st = sw_error(SW_STATUS_INVALID, "the tensors add up to more than 2^63 bytes");
      goto out;
    }
    order[i].begin = at;
    at += order[i].bytes;
  }
  /* the header, by name; it does not depend on the data order above */
  st = add_metadata(h, metadata);
  if (st) goto out;
  qsort(order, n, sizeof *order, by_name);
  for (size_t i = 0; i < n; i++) {
    if (i > 0 && !strcmp(order[i].t->name, order[i - 1].t->name)) {
      st = sw_error(SW_STATUS_INVALID, "tensor '%s' given twice", order[i].t->name);
      goto out;
    }
    json_t *entry = header_entry(&order[i]);
    if (!entry) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
    if (json_object_set_new(h, order[i].t->name, entry) != 0) {
      st = sw_error(SW_STATUS_INVALID, "tensor name '%s' is not valid UTF-8", order[i].t->name);
      goto out;
    }
  }
  text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!text) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  size_t text_len = strlen(text), padded = (text_len + 7) / 8 * 8;
  if (padded > HEADER_MAX) {
    st = sw_error(SW_STATUS_INVALID, "a header of %zu bytes (at most %u)", padded, HEADER_MAX);
    goto out;
  }
  head = sw_malloc(8 + padded);
  if (!head) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  put_le64(head, padded);
  memcpy(head + 8, text, text_len);
  memset(head + 8 + text_len, ' ', padded - text_len);

  /* Streamed rather than assembled: a model's weights need not fit in memory twice. */
  st = sw_atomic_file_open(path, &af);
  if (st) goto out;
  FILE *f = sw_atomic_file_stream(af);
  bool ok = fwrite(head, 1, 8 + padded, f) == 8 + padded;
  qsort(order, n, sizeof *order, by_layout);
  for (size_t i = 0; ok && i < n; i++)
    ok = order[i].bytes == 0 || fwrite(order[i].t->data, 1, order[i].bytes, f) == order[i].bytes;
  if (!ok) {
    st = sw_error(SW_STATUS_IO, "write %s: %s", path, strerror(errno));
    goto out;
  }
  st = sw_atomic_file_commit(af);
  af = NULL; /* freed by commit, even on error */
out:
  sw_atomic_file_abort(af);
  sw_free(head);
  free(text);
  json_decref(h);
  sw_free(order);
  return st;
}

/* ---- reading ---------------------------------------------------------------- */

typedef struct {
  uint64_t begin, end;
  size_t tensor;
} span;

static int by_span(const void *a, const void *b) {
  const span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

static int by_tensor_name(const void *a, const void *b) {
  return strcmp(((const sw_named_tensor *)a)->name, ((const sw_named_tensor *)b)->name);
}

/* A JSON integer in [0, INT64_MAX], or -1. */
static int64_t natural(const json_t *v) {
  if (!json_is_integer(v)) return -1;
  json_int_t x = json_integer_value(v);
  return x < 0 ? -1 : (int64_t)x;
}

/* Reads entry `key` of the header into *t and its offsets into *sp (begin, end). */
static sw_status read_entry(const char *key, const json_t *v, uint64_t data_len, sw_named_tensor *t,
                            span *sp) {
  if (!json_is_object(v)) return sw_error(SW_STATUS_FORMAT, "tensor '%s': the entry is not an object", key);
  const json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
               *offsets = json_object_get(v, "data_offsets");
  if (!dtype || !shape || !offsets)
    return sw_error(SW_STATUS_FORMAT, "tensor '%s': no %s", key,
                    !dtype   ? "dtype"
                    : !shape ? "shape"
                             : "data_offsets");
  const char *dt = json_string_value(dtype);
  if (!dt) return sw_error(SW_STATUS_FORMAT, "tensor '%s': dtype is not a string", key);
  if (!strcmp(dt, "F32")) {
    t->dtype = SW_DTYPE_F32;
  } else if (!strcmp(dt, "I64")) {
    t->dtype = SW_DTYPE_I64;
  } else if (!strcmp(dt, "U8")) {
    t->dtype = SW_DTYPE_U8;
  } else {
    for (int i = 0; other_dtypes[i]; i++)
      if (!strcmp(dt, other_dtypes[i]))
        return sw_error(SW_STATUS_UNSUPPORTED, "tensor '%s': dtype %s is not supported (F32, I64, U8 are)",
                        key, dt);
    return sw_error(SW_STATUS_FORMAT, "tensor '%s': unknown dtype \"%.40s\"", key, dt);
  }
  if (!json_is_array(shape)) return sw_error(SW_STATUS_FORMAT, "tensor '%s': shape is not an array", key);
  size_t rank = json_array_size(shape);
  if (rank > SW_NN_MAX_RANK)
    return sw_error(SW_STATUS_UNSUPPORTED, "tensor '%s': rank %zu (at most %d)", key, rank, SW_NN_MAX_RANK);
  t->rank = (int)rank;
  for (size_t d = 0; d < rank; d++) {
    t->shape[d] = natural(json_array_get(shape, d));
    if (t->shape[d] < 0)
      return sw_error(SW_STATUS_FORMAT, "tensor '%s': dimension %zu is not a non-negative integer", key, d);
  }
  uint64_t bytes;
  if (!tensor_bytes(t->dtype, t->rank, t->shape, &bytes))
    return sw_error(SW_STATUS_FORMAT, "tensor '%s': the size of its shape overflows", key);
  if (!json_is_array(offsets) || json_array_size(offsets) != 2 || natural(json_array_get(offsets, 0)) < 0 ||
      natural(json_array_get(offsets, 1)) < 0)
    return sw_error(SW_STATUS_FORMAT, "tensor '%s': data_offsets is not [begin, end]", key);
  sp->begin = (uint64_t)natural(json_array_get(offsets, 0));
  sp->end = (uint64_t)natural(json_array_get(offsets, 1));
  if (sp->end < sp->begin)
    return sw_error(SW_STATUS_FORMAT, "tensor '%s': data_offsets [%llu, %llu] end before they begin", key,
                    (unsigned long long)sp->begin, (unsigned long long)sp->end);
  if (sp->end - sp->begin != bytes)
    return sw_error(SW_STATUS_FORMAT,
                    "tensor '%s': shape and dtype %s make %llu bytes but data_offsets [%llu, %llu] hold %llu",
                    key, dt, (unsigned long long)bytes, (unsigned long long)sp->begin,
                    (unsigned long long)sp->end, (unsigned long long)(sp->end - sp->begin));
  if (sp->end > data_len)
    return sw_error(SW_STATUS_TRUNCATED,
                    "tensor '%s': data_offsets [%llu, %llu] reach past the %llu bytes of data", key,
                    (unsigned long long)sp->begin, (unsigned long long)sp->end, (unsigned long long)data_len);
  return SW_STATUS_OK;
}

/* Checks the file in st->file (file_len bytes at st->file + at, where at puts the data
 * section on an 8-byte boundary) and fills in st. */
static sw_status parse(sw_safetensors *st, size_t at, size_t file_len) {
  sw_status rc = SW_STATUS_OK;
  span *spans = NULL;
  const uint8_t *file = st->file + at;
  if (file_len < 8)
    return sw_error(SW_STATUS_TRUNCATED, "%zu bytes: too short for the 8-byte header length", file_len);
  uint64_t n = get_le64(file);
  if (n > HEADER_MAX)
    return sw_error(SW_STATUS_FORMAT, "a header length of %llu bytes (at most %u)", (unsigned long long)n,
                    HEADER_MAX);
  if (n > file_len - 8)
    return sw_error(SW_STATUS_TRUNCATED, "a header of %llu bytes, but only %zu bytes follow its length",
                    (unsigned long long)n, file_len - 8);
  if (n == 0 || file[8] != '{') return sw_error(SW_STATUS_FORMAT, "the header does not start with '{'");
  json_error_t err;
  st->header = json_loadb((const char *)file + 8, (size_t)n, JSON_REJECT_DUPLICATES, &err);
  if (!st->header) return sw_error(SW_STATUS_FORMAT, "header JSON, byte %d: %s", err.position, err.text);
  if (!json_is_object(st->header)) return sw_error(SW_STATUS_FORMAT, "the header is not a JSON object");

  const uint8_t *data = file + 8 + n;
  uint64_t data_len = file_len - 8 - n;
  size_t entries = json_object_size(st->header);
  st->tensors = sw_calloc(entries ? entries : 1, sizeof *st->tensors);
  spans = sw_malloc((entries ? entries : 1) * sizeof *spans);
  if (!st->tensors || !spans) {
    rc = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  const char *key;
  json_t *v;
  json_object_foreach(st->header, key, v) {
    if (!strcmp(key, META_KEY)) {
      const char *mk;
      json_t *mv;
      if (!json_is_object(v)) {
        rc = sw_error(SW_STATUS_FORMAT, "%s is not an object", META_KEY);
        goto out;
      }
      json_object_foreach(v, mk, mv) {
        if (!json_is_string(mv)) {
          rc = sw_error(SW_STATUS_FORMAT, "%s: '%s' is not a string", META_KEY, mk);
          goto out;
        }
      }
      st->metadata = v;
      continue;
    }
    sw_named_tensor *t = &st->tensors[st->count];
    t->name = key;
    spans[st->count].tensor = st->count;
    rc = read_entry(key, v, data_len, t, &spans[st->count]);
    if (rc) goto out;
    st->count++;
  }

  /* The tensors tile the data section exactly (Hugging Face's validate()). */
  qsort(spans, st->count, sizeof *spans, by_span);
  uint64_t end = 0;
  for (size_t i = 0; i < st->count; i++) {
    const span *s = &spans[i];
    if (s->begin > end) {
      rc = sw_error(SW_STATUS_FORMAT, "bytes [%llu, %llu) of the data belong to no tensor (the next is '%s')",
                    (unsigned long long)end, (unsigned long long)s->begin, st->tensors[s->tensor].name);
      goto out;
    }
    if (s->begin < end) {
      rc = sw_error(SW_STATUS_FORMAT, "tensor '%s' [%llu, %llu) overlaps tensor '%s' [%llu, %llu)",
                    st->tensors[s->tensor].name, (unsigned long long)s->begin, (unsigned long long)s->end,
                    st->tensors[spans[i - 1].tensor].name, (unsigned long long)spans[i - 1].begin,
                    (unsigned long long)spans[i - 1].end);
      goto out;
    }
    end = s->end;
  }
  if (end != data_len) {
    rc = sw_error(SW_STATUS_FORMAT, "%llu bytes of data, but the tensors cover only %llu",
                  (unsigned long long)data_len, (unsigned long long)end);
    goto out;
  }

  /* Point into the file. Our files and Hugging Face's keep every tensor aligned to its
   * element size; a file that does not gets those tensors copied, so data is always
   * aligned and callers may cast it. */
  size_t copies = 0;
  for (size_t i = 0; i < st->count; i++) {
    const span *s = &spans[i];
    if (s->end > s->begin && s->begin % sw_dtype_size(st->tensors[s->tensor].dtype) != 0)
      copies += (s->end - s->begin + 7) / 8 * 8;
  }
  if (copies > 0) {
    st->realigned = sw_malloc(copies);
    if (!st->realigned) {
      rc = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
  }
  size_t copied = 0;
  for (size_t i = 0; i < st->count; i++) {
    const span *s = &spans[i];
    sw_named_tensor *t = &st->tensors[s->tensor];
    if (s->end == s->begin || s->begin % sw_dtype_size(t->dtype) == 0) {
      t->data = data + s->begin;
    } else {
      memcpy(st->realigned + copied, data + s->begin, s->end - s->begin);
      t->data = st->realigned + copied;
      copied += (s->end - s->begin + 7) / 8 * 8;
    }
  }
  qsort(st->tensors, st->count, sizeof *st->tensors, by_tensor_name);
out:
  sw_free(spans);
  return rc;
}

/* Where in a buffer the file goes so that its data section starts 8-aligned (the
 * buffer itself being at least 8-aligned, as malloc's are). */
static size_t shift_for(const uint8_t *first8, size_t len) {
  if (len < 8) return 0;
  return (size_t)((8 - (8 + get_le64(first8) % 8) % 8) % 8);
}

sw_status sw_safetensors_parse(const uint8_t *data, size_t len, sw_safetensors **out) {
  *out = NULL;
  if (!data && len > 0) return sw_error(SW_STATUS_INVALID, "NULL data of %zu bytes", len);
  if (len > SIZE_MAX - 8) return sw_error(SW_STATUS_NOMEM, "a file of %zu bytes", len);
  sw_safetensors *st = sw_calloc(1, sizeof *st);
  size_t at = shift_for(data, len);
  if (st) st->file = sw_malloc(len + at);
  if (!st || !st->file) {
    sw_safetensors_close(st);
    return sw_error(SW_STATUS_NOMEM, "out of memory for a copy of %zu bytes", len);
  }
  if (len > 0) memcpy(st->file + at, data, len);
  sw_status rc = parse(st, at, len);
  if (rc) {
    sw_safetensors_close(st);
    return rc;
  }
  *out = st;
  return SW_STATUS_OK;
}

sw_status sw_safetensors_open(const char *path, sw_safetensors **out) {
  *out = NULL;
  sw_status rc = SW_STATUS_OK;
  sw_safetensors *st = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return sw_error(errno == ENOENT ? SW_STATUS_NOT_FOUND : SW_STATUS_IO, "open %s: %s", path,
                    strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    rc = sw_error(SW_STATUS_IO, "%s: not a regular file", path);
    goto out;
  }
  if ((uint64_t)sb.st_size > SIZE_MAX - 8) {
    rc = sw_error(SW_STATUS_NOMEM, "%s: a file of %lld bytes", path, (long long)sb.st_size);
    goto out;
  }
  size_t len = (size_t)sb.st_size;
  /* the length first, to read the rest straight to where the data section aligns */
  uint8_t first8[8];
  size_t got = fread(first8, 1, len < 8 ? len : 8, f);
  size_t at = shift_for(first8, got);
  st = sw_calloc(1, sizeof *st);
  if (st) st->file = sw_malloc(len + at);
  if (!st || !st->file) {
    rc = sw_error(SW_STATUS_NOMEM, "%s: out of memory for %zu bytes", path, len);
    goto out;
  }
  memcpy(st->file + at, first8, got);
  if (got == 8 && len > 8) got += fread(st->file + at + 8, 1, len - 8, f);
  if (ferror(f)) {
    rc = sw_error(SW_STATUS_IO, "read %s: %s", path, strerror(errno));
    goto out;
  }
  rc = parse(st, at, got); /* a file that shrank meanwhile reads as truncated */
  if (rc) sw_error_prefix(rc, "%s: ", path);
out:
  fclose(f);
  if (rc) {
    sw_safetensors_close(st);
    return rc;
  }
  *out = st;
  return SW_STATUS_OK;
}

size_t sw_safetensors_count(const sw_safetensors *st) { return st ? st->count : 0; }

const sw_named_tensor *sw_safetensors_get(const sw_safetensors *st, size_t i) {
  return st && i < st->count ? &st->tensors[i] : NULL;
}

const sw_named_tensor *sw_safetensors_find(const sw_safetensors *st, const char *name) {
  if (!st || !name) return NULL;
  sw_named_tensor key = {.name = name};
  return bsearch(&key, st->tensors, st->count, sizeof *st->tensors, by_tensor_name);
}

const json_t *sw_safetensors_metadata(const sw_safetensors *st) { return st ? st->metadata : NULL; }

void sw_safetensors_close(sw_safetensors *st) {
  if (!st) return;
  sw_free(st->realigned);
  sw_free(st->tensors);
  json_decref(st->header);
  sw_free(st->file);
  sw_free(st);
}
