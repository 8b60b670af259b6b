/* The dataset reader that train and eval use: opens a dataset dir, indexes a split's
 * shards, and yields batches in an order fixed by (seed, epoch), one typed buffer per
 * feature. Every record's CRCs are checked as it is read; a bad one is an error naming
 * the shard and byte offset. */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data_int.h"

typedef struct {
  char *file;
  char *path;
  uint64_t examples;
  uint64_t bytes;
  char sha256[SW_SHA256_HEX_LEN];
} shard_info;

typedef struct {
  char *name;
  uint64_t examples;
  size_t n_shards;
  shard_info *shards;
} split_info;

struct sw_dataset {
  char *dir;
  json_t *manifest;
  sw_schema *schema;
  char sha256[SW_SHA256_HEX_LEN];
  size_t n_splits;
  split_info *splits;
};

/* A name from a file that becomes a path must be a plain file name. */
static bool safe_file_name(const char *s) {
  if (!s || !*s || !strcmp(s, ".") || !strcmp(s, "..")) return false;
  for (const char *c = s; *c; c++)
    if (*c == '/' || *c == '\\' || (unsigned char)*c < 0x20) return false;
  return true;
}

void sw_dataset_close(sw_dataset *ds) {
  if (!ds) return;
  for (size_t i = 0; i < ds->n_splits; i++) {
    for (size_t k = 0; k < ds->splits[i].n_shards; k++) {
      sw_free(ds->splits[i].shards[k].file);
      sw_free(ds->splits[i].shards[k].path);
    }
    sw_free(ds->splits[i].shards);
    sw_free(ds->splits[i].name);
  }
  sw_free(ds->splits);
  sw_schema_free(ds->schema);
  json_decref(ds->manifest);
  sw_free(ds->dir);
  sw_free(ds);
}

static sw_status load_splits(sw_dataset *ds, const char *mpath) {
  const json_t *splits = json_object_get(ds->manifest, "splits");
  if (!json_is_object(splits)) return sw_error(SW_STATUS_FORMAT, "%s: no \"splits\" object", mpath);
  ds->splits = sw_calloc(json_object_size(splits) + 1, sizeof *ds->splits);
  if (!ds->splits) return sw_error(SW_STATUS_NOMEM, "out of memory");
  const char *name;
  const json_t *sj;
  json_object_foreach((json_t *)splits, name, sj) {
    split_info *sp = &ds->splits[ds->n_splits++];
    sp->name = sw_strdup(name);
    const json_t *shards = json_object_get(sj, "shards");
    if (!sp->name) return sw_error(SW_STATUS_NOMEM, "out of memory");
    if (!json_is_array(shards) || !json_is_integer(json_object_get(sj, "examples")))
      return sw_error(SW_STATUS_FORMAT, "%s: split '%s' needs \"examples\" and \"shards\"", mpath, name);
    sp->examples = (uint64_t)json_integer_value(json_object_get(sj, "examples"));
    sp->shards = sw_calloc(json_array_size(shards) + 1, sizeof *sp->shards);
    if (!sp->shards) return sw_error(SW_STATUS_NOMEM, "out of memory");
    uint64_t total = 0;
    size_t i;
    const json_t *sh;
    json_array_foreach(shards, i, sh) {
      shard_info *si = &sp->shards[sp->n_shards++];
      const char *file = json_string_value(json_object_get(sh, "file"));
      const char *sha = json_string_value(json_object_get(sh, "sha256"));
      if (!safe_file_name(file))
        return sw_error(SW_STATUS_FORMAT, "%s: split '%s' shard %zu has no plain file name", mpath, name, i);
      if (!sha || strlen(sha) != 64 || !json_is_integer(json_object_get(sh, "examples")) ||
          !json_is_integer(json_object_get(sh, "bytes")))
        return sw_error(SW_STATUS_FORMAT, "%s: shard %s needs examples, bytes and sha256", mpath, file);
      si->file = sw_strdup(file);
      si->path = sw_path_join(ds->dir, file);
      if (!si->file || !si->path) return sw_error(SW_STATUS_NOMEM, "out of memory");
      memcpy(si->sha256, sha, SW_SHA256_HEX_LEN);
      si->examples = (uint64_t)json_integer_value(json_object_get(sh, "examples"));
      si->bytes = (uint64_t)json_integer_value(json_object_get(sh, "bytes"));
      if (si->examples > si->bytes / SW_TFRECORD_OVERHEAD)
        return sw_error(SW_STATUS_FORMAT, "%s: shard %s cannot hold %llu records in %llu bytes", mpath, file,
                        (unsigned long long)si->examples, (unsigned long long)si->bytes);
      total += si->examples;
      struct stat sb;
      if (stat(si->path, &sb) != 0)
        return sw_error(SW_STATUS_NOT_FOUND, "%s: shard %s is missing: %s", ds->dir, file, strerror(errno));
      if ((uint64_t)sb.st_size != si->bytes)
        return sw_error((uint64_t)sb.st_size < si->bytes ? SW_STATUS_TRUNCATED : SW_STATUS_CORRUPT,
                        "%s: shard %s has %lld bytes, the manifest says %llu", ds->dir, file,
                        (long long)sb.st_size, (unsigned long long)si->bytes);
    }
    if (total != sp->examples)
      return sw_error(SW_STATUS_FORMAT, "%s: split '%s' shards hold %llu examples, the split says %llu", mpath,
                      name, (unsigned long long)total, (unsigned long long)sp->examples);
  }
  return SW_STATUS_OK;
}

sw_status sw_dataset_open(const char *dir, sw_dataset **out) {
  *out = NULL;
  sw_dataset *ds = sw_calloc(1, sizeof *ds);
  char *mpath = NULL, *spath = NULL;
  sw_status st = SW_STATUS_OK;
  if (!ds || !(ds->dir = sw_strdup(dir))) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  mpath = sw_path_join(dir, "manifest.json");
  if (!mpath) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  if (!sw_path_is_dir(dir)) {
    st = sw_error(SW_STATUS_NOT_FOUND, "dataset %s: no such directory", dir);
    goto out;
  }
  if (!sw_path_exists(mpath)) {
    st = sw_error(SW_STATUS_NOT_FOUND, "%s is not a dataset: no manifest.json", dir);
    goto out;
  }
  st = sw_json_load_file(mpath, &ds->manifest);
  if (st) goto out;
  st = sw_sha256_file_hex(mpath, ds->sha256);
  if (st) goto out;
  if (strcmp(json_string_value(json_object_get(ds->manifest, "format")) ?: "", "slipway-dataset") != 0) {
    st = sw_error(SW_STATUS_FORMAT, "%s: not a slipway dataset manifest", mpath);
    goto out;
  }
  const char *schema_name = json_string_value(json_object_get(ds->manifest, "schema"));
  if (!safe_file_name(schema_name)) {
    st = sw_error(SW_STATUS_FORMAT, "%s: \"schema\" must be a plain file name", mpath);
    goto out;
  }
  spath = sw_path_join(dir, schema_name);
  if (!spath) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  st = sw_schema_load(spath, &ds->schema);
  if (st) goto out;
  st = load_splits(ds, mpath);
out:
  sw_free(mpath);
  sw_free(spath);
  if (st) {
    sw_dataset_close(ds);
    return st;
  }
  *out = ds;
  return SW_STATUS_OK;
}

const sw_schema *sw_dataset_schema(const sw_dataset *ds) { return ds->schema; }
const json_t *sw_dataset_manifest(const sw_dataset *ds) { return ds->manifest; }
const char *sw_dataset_sha256(const sw_dataset *ds) { return ds->sha256; }

static const split_info *find_split(const sw_dataset *ds, const char *name) {
  for (size_t i = 0; i < ds->n_splits; i++)
    if (!strcmp(ds->splits[i].name, name)) return &ds->splits[i];
  return NULL;
}

int64_t sw_dataset_split_examples(const sw_dataset *ds, const char *split) {
  const split_info *sp = find_split(ds, split);
  return sp ? (int64_t)sp->examples : -1;
}

sw_status sw_dataset_verify(const sw_dataset *ds) {
  for (size_t i = 0; i < ds->n_splits; i++)
    for (size_t k = 0; k < ds->splits[i].n_shards; k++) {
      const shard_info *si = &ds->splits[i].shards[k];
      char hex[SW_SHA256_HEX_LEN];
      sw_status st = sw_sha256_file_hex(si->path, hex);
      if (st) return st;
      if (strcmp(hex, si->sha256) != 0)
        return sw_error(SW_STATUS_CORRUPT, "%s: shard %s: SHA-256 %s, the manifest says %s", ds->dir, si->file,
                        hex, si->sha256);
    }
  return SW_STATUS_OK;
}

/* ---- the reader ------------------------------------------------------------ */

typedef struct {
  const sw_feature_spec *spec;
  float fill_f32; /* value of a missing optional number: the training mean */
} column;

typedef struct {
  uint32_t shard;
  uint64_t offset;
} record_ref;

struct sw_reader {
  sw_dataset *ds;
  const split_info *split;
  sw_reader_options opt;
  sw_tfrecord_reader **shards;
  record_ref *index;
  uint64_t n;
  uint64_t *perm; /* order of the current epoch */
  uint64_t perm_epoch;
  sw_reader_pos pos;
  column *cols;
  sw_batch batch;
  size_t reserved; /* examples the batch buffers hold */
};

void sw_reader_close(sw_reader *r) {
  if (!r) return;
  if (r->shards)
    for (size_t i = 0; i < r->split->n_shards; i++) sw_tfrecord_close(r->shards[i]);
  sw_free(r->shards);
  sw_free(r->index);
  sw_free(r->perm);
  sw_free(r->cols);
  if (r->batch.tensors)
    for (size_t i = 0; i < r->batch.n_tensors; i++) sw_free(r->batch.tensors[i].data);
  sw_free(r->batch.tensors);
  sw_free(r);
}

/* Lists the frames of a shard, checking both CRCs of each (a damaged shard fails the
 * open, naming the frame); records are checked again whenever they are read. */
static sw_status index_shard(sw_reader *r, uint32_t s) {
  sw_tfrecord_reader *tr = r->shards[s];
  const shard_info *si = &r->split->shards[s];
  uint64_t off = 0, size = sw_tfrecord_size(tr), count = 0;
  while (off < size) {
    const uint8_t *data;
    size_t len;
    sw_status st = sw_tfrecord_read_at(tr, off, &data, &len);
    if (st) return st;
    r->index[r->n].shard = s;
    r->index[r->n].offset = off;
    if (++count > si->examples) break;
    r->n++;
    off += len + SW_TFRECORD_OVERHEAD;
  }
  if (count != si->examples)
    return sw_error(SW_STATUS_CORRUPT, "%s: holds %llu records, the manifest says %llu", si->file,
                    (unsigned long long)count, (unsigned long long)si->examples);
  return SW_STATUS_OK;
}

static double transform_mean(const sw_dataset *ds, const char *name) {
  const json_t *t = json_object_get(json_object_get(json_object_get(ds->manifest, "transform"), "features"), name);
  const json_t *m = json_object_get(t, "mean");
  return json_is_number(m) ? json_number_value(m) : 0.0;
}

sw_status sw_reader_open(sw_dataset *ds, const char *split, const sw_reader_options *opt,
                         sw_reader **out) {
  *out = NULL;
  const split_info *sp = find_split(ds, split);
  if (!sp) return sw_error(SW_STATUS_NOT_FOUND, "dataset %s has no split '%s'", ds->dir, split);
  sw_reader *r = sw_calloc(1, sizeof *r);
  if (!r) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = SW_STATUS_OK;
  r->ds = ds;
  r->split = sp;
  if (opt) r->opt = *opt;
  r->perm_epoch = UINT64_MAX;
  r->shards = sw_calloc(sp->n_shards + 1, sizeof *r->shards);
  r->index = sw_malloc((sp->examples + 1) * sizeof *r->index);
  r->cols = sw_calloc(ds->schema->n_features + 1, sizeof *r->cols);
  r->batch.tensors = sw_calloc(ds->schema->n_features + 1, sizeof *r->batch.tensors);
  if (!r->shards || !r->index || !r->cols || !r->batch.tensors) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  for (uint32_t s = 0; s < sp->n_shards; s++) {
    st = sw_tfrecord_open(sp->shards[s].path, &r->shards[s]);
    if (!st) st = index_shard(r, s);
    if (st) goto out;
  }
  for (size_t i = 0; i < ds->schema->n_features; i++) {
    const sw_feature_spec *fs = &ds->schema->features[i];
    int64_t elems = sw_feature_spec_elements(fs);
    bool numeric = fs->image || fs->kind != SW_FEATURE_KIND_BYTES || fs->n_values > 0;
    if (elems < 0 || !numeric) {
      SW_DEBUG("reader: feature '%s' has no fixed numeric form and is left out of batches", fs->name);
      continue;
    }
    size_t t = r->batch.n_tensors++;
    r->cols[t].spec = fs;
    r->cols[t].fill_f32 = (float)transform_mean(ds, fs->name);
    sw_batch_tensor *bt = &r->batch.tensors[t];
    bt->name = fs->name;
    bt->dtype = (fs->image || fs->kind == SW_FEATURE_KIND_FLOAT) ? SW_DTYPE_F32 : SW_DTYPE_I64;
    bt->rank = fs->rank + 1;
    for (int d = 0; d < fs->rank; d++) bt->shape[d + 1] = fs->shape[d];
  }
out:
  if (st) {
    sw_reader_close(r);
    return st;
  }
  *out = r;
  return SW_STATUS_OK;
}

uint64_t sw_reader_examples(const sw_reader *r) { return r->n; }
sw_reader_pos sw_reader_tell(const sw_reader *r) { return r->pos; }

sw_status sw_reader_seek(sw_reader *r, sw_reader_pos pos) {
  if (pos.index > r->n)
    return sw_error(SW_STATUS_RANGE, "reader position %llu is past the split's %llu examples",
                    (unsigned long long)pos.index, (unsigned long long)r->n);
  r->pos = pos;
  return SW_STATUS_OK;
}

const sw_batch_tensor *sw_batch_find(const sw_batch *b, const char *name) {
  for (size_t i = 0; i < b->n_tensors; i++)
    if (!strcmp(b->tensors[i].name, name)) return &b->tensors[i];
  return NULL;
}

static sw_status reserve(sw_reader *r, size_t max) {
  if (max <= r->reserved) return SW_STATUS_OK;
  for (size_t t = 0; t < r->batch.n_tensors; t++) {
    sw_batch_tensor *bt = &r->batch.tensors[t];
    size_t per = (size_t)sw_feature_spec_elements(r->cols[t].spec) * sw_dtype_size(bt->dtype);
    void *d = sw_realloc(bt->data, per * max);
    if (!d) return sw_error(SW_STATUS_NOMEM, "out of memory for a batch of %zu", max);
    bt->data = d;
  }
  r->reserved = max;
  return SW_STATUS_OK;
}

static sw_status ensure_perm(sw_reader *r) {
  if (r->perm_epoch == r->pos.epoch) return SW_STATUS_OK;
  if (!r->perm) {
    r->perm = sw_malloc((r->n + 1) * sizeof *r->perm);
    if (!r->perm) return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  if (r->opt.shuffle) {
    sw_rng rng;
    /* stream = epoch: each epoch's order depends on (seed, epoch) alone */
    sw_rng_init(&rng, r->opt.seed, r->pos.epoch);
    sw_rng_permutation(&rng, r->perm, r->n);
  } else {
    for (uint64_t i = 0; i < r->n; i++) r->perm[i] = i;
  }
  r->perm_epoch = r->pos.epoch;
  return SW_STATUS_OK;
}

/* Copies one decoded example into row `row` of the batch. */
static sw_status fill_row(sw_reader *r, const sw_example *ex, size_t row, const char *shard, uint64_t off) {
  for (size_t t = 0; t < r->batch.n_tensors; t++) {
    const sw_feature_spec *fs = r->cols[t].spec;
    sw_batch_tensor *bt = &r->batch.tensors[t];
    size_t elems = (size_t)sw_feature_spec_elements(fs);
    const sw_feature *f = sw_example_find(ex, fs->name);
    bool missing = !f || f->count == 0;
    if (!missing && f->kind != fs->kind)
      return sw_error(SW_STATUS_FORMAT, "%s: offset %llu: feature '%s' is %s, the schema says %s", shard,
                      (unsigned long long)off, fs->name, sw_feature_kind_name(f->kind), sw_feature_kind_name(fs->kind));
    if (bt->dtype == SW_DTYPE_F32) {
      float *dst = (float *)bt->data + row * elems;
      if (missing) {
        for (size_t k = 0; k < elems; k++) dst[k] = r->cols[t].fill_f32;
      } else if (fs->image) {
        if (f->count != 1 || f->v.bytes[0].len != elems) goto bad_shape;
        const uint8_t *px = f->v.bytes[0].data;
        for (size_t k = 0; k < elems; k++) dst[k] = px[k];
      } else {
        if (f->count != elems) goto bad_shape;
        memcpy(dst, f->v.f32, elems * sizeof *dst);
      }
    } else {
      int64_t *dst = (int64_t *)bt->data + row * elems;
      if (missing) {
        for (size_t k = 0; k < elems; k++) dst[k] = fs->kind == SW_FEATURE_KIND_BYTES ? -1 : 0;
      } else if (f->count != elems) {
        goto bad_shape;
      } else if (fs->kind == SW_FEATURE_KIND_INT64) {
        memcpy(dst, f->v.i64, elems * sizeof *dst);
      } else {
        for (size_t k = 0; k < elems; k++) {
          dst[k] = -1;
          for (size_t v = 0; v < fs->n_values; v++)
            if (f->v.bytes[k].len == strlen(fs->values[v]) &&
                !memcmp(f->v.bytes[k].data, fs->values[v], f->v.bytes[k].len)) {
              dst[k] = (int64_t)v;
              break;
            }
        }
      }
    }
    continue;
  bad_shape:
    return sw_error(SW_STATUS_FORMAT, "%s: offset %llu: feature '%s' has %zu values, the schema says %zu", shard,
                    (unsigned long long)off, fs->name, f->count, elems);
  }
  return SW_STATUS_OK;
}

sw_status sw_reader_next(sw_reader *r, size_t max, const sw_batch **out) {
  *out = NULL;
  if (max == 0) return sw_error(SW_STATUS_INVALID, "batch size 0");
  sw_status st = reserve(r, max);
  if (st) return st;
  if (r->pos.index >= r->n) {
    r->pos.epoch++;
    r->pos.index = 0;
    r->batch.n = 0;
    return SW_STATUS_EOF;
  }
  st = ensure_perm(r);
  if (st) return st;
  size_t take = (size_t)(r->n - r->pos.index < max ? r->n - r->pos.index : max);
  for (size_t i = 0; i < take; i++) {
    const record_ref *ref = &r->index[r->perm[r->pos.index + i]];
    sw_tfrecord_reader *tr = r->shards[ref->shard];
    const uint8_t *data;
    size_t len;
    st = sw_tfrecord_read_at(tr, ref->offset, &data, &len);
    if (st) return st;
    sw_example ex;
    st = sw_example_decode(data, len, &ex);
    if (st)
      return sw_error_prefix(st, "%s: offset %llu: ", sw_tfrecord_name(tr), (unsigned long long)ref->offset);
    st = fill_row(r, &ex, i, sw_tfrecord_name(tr), ref->offset);
    sw_example_clear(&ex);
    if (st) return st;
  }
  for (size_t t = 0; t < r->batch.n_tensors; t++) r->batch.tensors[t].shape[0] = (int64_t)take;
  r->batch.n = take;
  r->pos.index += take;
  *out = &r->batch;
  return SW_STATUS_OK;
}
