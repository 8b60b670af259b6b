/* tf.train.Example in memory, and its wire form through protobuf-c. Keys are written
 * sorted, so equal examples serialize to equal bytes (as Python's deterministic output);
 * duplicate keys are rejected on reading, since a map keeps only one of them. */
#include <stdlib.h>
#include <string.h>

#include "data/data_int.h"
#include "example.pb-c.h"

const char *sw_feature_kind_name(sw_feature_kind k) {
  switch (k) {
    case SW_FEATURE_KIND_BYTES: return "bytes";
    case SW_FEATURE_KIND_FLOAT: return "float";
    case SW_FEATURE_KIND_INT64: return "int";
    default: return "none";
  }
}

static sw_status add_feature(sw_example *ex, const char *name, sw_feature **out) {
  for (size_t i = 0; i < ex->n_features; i++)
    if (!strcmp(ex->features[i].name, name))
      return sw_error(SW_STATUS_INVALID, "feature '%s' given twice", name);
  sw_feature *f = sw_realloc(ex->features, (ex->n_features + 1) * sizeof *f);
  if (!f) return sw_error(SW_STATUS_NOMEM, "out of memory");
  ex->features = f;
  f = &ex->features[ex->n_features];
  memset(f, 0, sizeof *f);
  f->name = sw_strdup(name);
  if (!f->name) return sw_error(SW_STATUS_NOMEM, "out of memory");
  ex->n_features++;
  *out = f;
  return SW_STATUS_OK;
}

sw_status sw_example_add_float(sw_example *ex, const char *name, const float *v, size_t n) {
  sw_feature *f;
  sw_status st = add_feature(ex, name, &f);
  if (st) return st;
  f->kind = SW_FEATURE_KIND_FLOAT;
  f->v.f32 = sw_malloc(n * sizeof *v);
  if (!f->v.f32) return sw_error(SW_STATUS_NOMEM, "out of memory");
  if (n) memcpy(f->v.f32, v, n * sizeof *v);
  f->count = n;
  return SW_STATUS_OK;
}

sw_status sw_example_add_int64(sw_example *ex, const char *name, const int64_t *v, size_t n) {
  sw_feature *f;
  sw_status st = add_feature(ex, name, &f);
  if (st) return st;
  f->kind = SW_FEATURE_KIND_INT64;
  f->v.i64 = sw_malloc(n * sizeof *v);
  if (!f->v.i64) return sw_error(SW_STATUS_NOMEM, "out of memory");
  if (n) memcpy(f->v.i64, v, n * sizeof *v);
  f->count = n;
  return SW_STATUS_OK;
}

sw_status sw_example_add_bytes(sw_example *ex, const char *name, const sw_bytes *v, size_t n) {
  sw_feature *f;
  sw_status st = add_feature(ex, name, &f);
  if (st) return st;
  f->kind = SW_FEATURE_KIND_BYTES;
  f->v.bytes = sw_calloc(n ? n : 1, sizeof *f->v.bytes);
  if (!f->v.bytes) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    f->v.bytes[i].data = sw_malloc(v[i].len + 1);
    if (!f->v.bytes[i].data) {
      f->count = i;
      return sw_error(SW_STATUS_NOMEM, "out of memory");
    }
    if (v[i].len) memcpy(f->v.bytes[i].data, v[i].data, v[i].len);
    f->v.bytes[i].data[v[i].len] = 0;
    f->v.bytes[i].len = v[i].len;
  }
  f->count = n;
  return SW_STATUS_OK;
}

const sw_feature *sw_example_find(const sw_example *ex, const char *name) {
  for (size_t i = 0; i < ex->n_features; i++)
    if (!strcmp(ex->features[i].name, name)) return &ex->features[i];
  return NULL;
}

void sw_example_clear(sw_example *ex) {
  if (!ex) return;
  for (size_t i = 0; i < ex->n_features; i++) {
    sw_feature *f = &ex->features[i];
    if (f->kind == SW_FEATURE_KIND_BYTES && f->v.bytes)
      for (size_t k = 0; k < f->count; k++) sw_free(f->v.bytes[k].data);
    sw_free(f->v.bytes); /* the union's pointer, whatever its type */
    sw_free(f->name);
  }
  sw_free(ex->features);
  ex->features = NULL;
  ex->n_features = 0;
}

static int by_name(const void *a, const void *b) {
  const sw_feature *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

sw_status sw_example_encode(const sw_example *ex, sw_buf *out) {
  sw_status st = SW_STATUS_OK;
  size_t n = ex->n_features;
  const sw_feature **sorted = sw_malloc((n ? n : 1) * sizeof *sorted);
  Tensorflow__Features__FeatureEntry *entries = sw_calloc(n ? n : 1, sizeof *entries);
  Tensorflow__Features__FeatureEntry **entry_ptrs = sw_malloc((n ? n : 1) * sizeof *entry_ptrs);
  Tensorflow__Feature *feats = sw_calloc(n ? n : 1, sizeof *feats);
  Tensorflow__BytesList *bls = sw_calloc(n ? n : 1, sizeof *bls);
  Tensorflow__FloatList *fls = sw_calloc(n ? n : 1, sizeof *fls);
  Tensorflow__Int64List *ils = sw_calloc(n ? n : 1, sizeof *ils);
  ProtobufCBinaryData **bins = sw_calloc(n ? n : 1, sizeof *bins);
  if (!sorted || !entries || !entry_ptrs || !feats || !bls || !fls || !ils || !bins) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory encoding an example");
    goto out;
  }
  for (size_t i = 0; i < n; i++) sorted[i] = &ex->features[i];
  qsort(sorted, n, sizeof *sorted, by_name);
  for (size_t i = 0; i < n; i++) {
    const sw_feature *f = sorted[i];
    tensorflow__features__feature_entry__init(&entries[i]);
    tensorflow__feature__init(&feats[i]);
    entries[i].key = f->name;
    entries[i].value = &feats[i];
    entry_ptrs[i] = &entries[i];
    switch (f->kind) {
      case SW_FEATURE_KIND_BYTES:
        tensorflow__bytes_list__init(&bls[i]);
        bins[i] = sw_calloc(f->count ? f->count : 1, sizeof **bins);
        if (!bins[i]) {
          st = sw_error(SW_STATUS_NOMEM, "out of memory encoding an example");
          goto out;
        }
        for (size_t k = 0; k < f->count; k++) {
          bins[i][k].data = f->v.bytes[k].data;
          bins[i][k].len = f->v.bytes[k].len;
        }
        bls[i].n_value = f->count;
        bls[i].value = bins[i];
        feats[i].kind_case = TENSORFLOW__FEATURE__KIND_BYTES_LIST;
        feats[i].bytes_list = &bls[i];
        break;
      case SW_FEATURE_KIND_FLOAT:
        tensorflow__float_list__init(&fls[i]);
        fls[i].n_value = f->count;
        fls[i].value = f->v.f32;
        feats[i].kind_case = TENSORFLOW__FEATURE__KIND_FLOAT_LIST;
        feats[i].float_list = &fls[i];
        break;
      case SW_FEATURE_KIND_INT64:
        tensorflow__int64_list__init(&ils[i]);
        ils[i].n_value = f->count;
        ils[i].value = f->v.i64;
        feats[i].kind_case = TENSORFLOW__FEATURE__KIND_INT64_LIST;
        feats[i].int64_list = &ils[i];
        break;
      default:
        break; /* kind not set: an empty Feature */
    }
  }
  Tensorflow__Features features = TENSORFLOW__FEATURES__INIT;
  features.n_feature = n;
  features.feature = entry_ptrs;
  Tensorflow__Example msg = TENSORFLOW__EXAMPLE__INIT;
  msg.features = &features;
  size_t size = tensorflow__example__get_packed_size(&msg);
  st = sw_buf_reserve(out, size + 1);
  if (st) goto out;
  size_t wrote = tensorflow__example__pack(&msg, out->data + out->len);
  SW_ASSERT(wrote == size);
  out->len += wrote;
out:
  if (bins)
    for (size_t i = 0; i < n; i++) sw_free(bins[i]);
  sw_free(bins);
  sw_free(ils);
  sw_free(fls);
  sw_free(bls);
  sw_free(feats);
  sw_free(entry_ptrs);
  sw_free(entries);
  sw_free(sorted);
  return st;
}

static int entry_by_key(const void *a, const void *b) {
  const Tensorflow__Features__FeatureEntry *const *x = a, *const *y = b;
  return strcmp((*x)->key ? (*x)->key : "", (*y)->key ? (*y)->key : "");
}

sw_status sw_example_decode(const uint8_t *data, size_t len, sw_example *ex) {
  memset(ex, 0, sizeof *ex);
  Tensorflow__Example *msg = tensorflow__example__unpack(NULL, len, data);
  if (!msg) return sw_error(SW_STATUS_FORMAT, "not a valid tf.train.Example (%zu bytes)", len);
  sw_status st = SW_STATUS_OK;
  Tensorflow__Features__FeatureEntry **entries = NULL;
  size_t n = msg->features ? msg->features->n_feature : 0;
  if (n == 0) goto out;
  entries = sw_malloc(n * sizeof *entries);
  if (!entries) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  memcpy(entries, msg->features->feature, n * sizeof *entries);
  qsort(entries, n, sizeof *entries, entry_by_key);
  for (size_t i = 0; i < n; i++) {
    const Tensorflow__Features__FeatureEntry *e = entries[i];
    const char *key = e->key ? e->key : "";
    if (i > 0 && !strcmp(key, entries[i - 1]->key ? entries[i - 1]->key : "")) {
      st = sw_error(SW_STATUS_FORMAT, "feature '%s' appears twice in one example", key);
      goto out;
    }
    if (strlen(key) == 0) {
      st = sw_error(SW_STATUS_FORMAT, "feature with an empty name");
      goto out;
    }
    const Tensorflow__Feature *f = e->value;
    if (!f || f->kind_case == TENSORFLOW__FEATURE__KIND__NOT_SET) {
      sw_feature *nf;
      st = add_feature(ex, key, &nf);
      if (st) goto out;
      continue;
    }
    switch (f->kind_case) {
      case TENSORFLOW__FEATURE__KIND_BYTES_LIST: {
        size_t cnt = f->bytes_list->n_value;
        sw_bytes *tmp = sw_malloc((cnt ? cnt : 1) * sizeof *tmp);
        if (!tmp) {
          st = sw_error(SW_STATUS_NOMEM, "out of memory");
          goto out;
        }
        for (size_t k = 0; k < cnt; k++) {
          tmp[k].data = f->bytes_list->value[k].data;
          tmp[k].len = f->bytes_list->value[k].len;
        }
        st = sw_example_add_bytes(ex, key, tmp, cnt);
        sw_free(tmp);
        break;
      }
      case TENSORFLOW__FEATURE__KIND_FLOAT_LIST:
        st = sw_example_add_float(ex, key, f->float_list->value, f->float_list->n_value);
        break;
      case TENSORFLOW__FEATURE__KIND_INT64_LIST:
        st = sw_example_add_int64(ex, key, f->int64_list->value, f->int64_list->n_value);
        break;
      default:
        st = sw_error(SW_STATUS_FORMAT, "feature '%s' has an unknown kind", key);
        break;
    }
    if (st) goto out;
  }
out:
  sw_free(entries);
  tensorflow__example__free_unpacked(msg, NULL);
  if (st) sw_example_clear(ex);
  return st;
}
