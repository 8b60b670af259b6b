/* IDX image/label pairs (MNIST's format), gzipped or not. A directory is searched for
 * *images-idx3-ubyte* files, each paired with the *labels-idx1-ubyte* file of the same
 * prefix; pairs whose prefix starts with t10k or test become the test split.
 *
 * IDX header, big-endian:
 *   offset  size  field
 *   0       2     zero
 *   2       1     element type (0x08 = unsigned byte)
 *   3       1     number of dimensions D
 *   4       4*D   size of each dimension
 *   4+4D    ...   elements, C order
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "data/data_int.h"

static const char *const fashion_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

typedef struct {
  uint8_t *data;
  size_t len;
  uint32_t dims[4];
  int ndim;
} idx_file;

/* Reads a whole IDX file (through zlib, which passes plain files through) and checks
 * its header against its size. */
static sw_status read_idx(const char *path, int want_ndim, idx_file *out) {
  memset(out, 0, sizeof *out);
  gzFile gz = gzopen(path, "rb");
  if (!gz) return sw_error(SW_STATUS_IO, "open %s: %s", path, strerror(errno));
  sw_buf b = {0};
  sw_status st = SW_STATUS_OK;
  uint8_t chunk[1 << 16];
  int n;
  while ((n = gzread(gz, chunk, sizeof chunk)) > 0) {
    st = sw_buf_append(&b, chunk, (size_t)n);
    if (st) goto out;
  }
  if (n < 0) {
    int errnum;
    const char *msg = gzerror(gz, &errnum);
    st = sw_error(SW_STATUS_FORMAT, "%s: %s", path, msg);
    goto out;
  }
  if (b.len < 4 || b.data[0] || b.data[1]) {
    st = sw_error(SW_STATUS_FORMAT, "%s: not an IDX file (bad magic)", path);
    goto out;
  }
  if (b.data[2] != 0x08) {
    st = sw_error(SW_STATUS_UNSUPPORTED, "%s: IDX element type 0x%02x (only unsigned bytes, 0x08)", path,
                  b.data[2]);
    goto out;
  }
  out->ndim = b.data[3];
  if (out->ndim != want_ndim) {
    st = sw_error(SW_STATUS_FORMAT, "%s: %d dimensions, expected %d", path, out->ndim, want_ndim);
    goto out;
  }
  size_t header = 4 + 4 * (size_t)out->ndim;
  if (b.len < header) {
    st = sw_error(SW_STATUS_TRUNCATED, "%s: truncated IDX header", path);
    goto out;
  }
  uint64_t elems = 1;
  for (int d = 0; d < out->ndim; d++) {
    const uint8_t *p = b.data + 4 + 4 * d;
    out->dims[d] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    elems *= out->dims[d];
    if (out->dims[d] == 0 || elems > ((uint64_t)1 << 40)) {
      st = sw_error(SW_STATUS_FORMAT, "%s: implausible dimension %u", path, out->dims[d]);
      goto out;
    }
  }
  if (b.len - header != elems) {
    st = sw_error(b.len - header < elems ? SW_STATUS_TRUNCATED : SW_STATUS_FORMAT,
                  "%s: header declares %llu bytes of elements, file holds %zu", path,
                  (unsigned long long)elems, b.len - header);
    goto out;
  }
  out->data = b.data;
  out->len = b.len;
  b.data = NULL;
out:
  gzclose(gz);
  sw_buf_free(&b);
  return st;
}

static bool is_test_prefix(const char *name) {
  return !strncmp(name, "t10k", 4) || !strncasecmp(name, "test", 4);
}

static sw_status build_schema(sw__prep *p, uint32_t rows, uint32_t cols, int max_label) {
  sw_schema *s = sw_calloc(1, sizeof *s);
  if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory");
  s->features = sw_calloc(2, sizeof *s->features);
  if (!s->features) {
    sw_free(s);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  s->n_features = 2;
  s->label = 1;
  sw_feature_spec *img = &s->features[0], *lab = &s->features[1];
  img->name = sw_strdup("image");
  img->kind = SW_FEATURE_KIND_BYTES;
  img->image = true;
  img->rank = 3;
  img->shape[0] = rows;
  img->shape[1] = cols;
  img->shape[2] = 1;
  img->required = true;
  img->has_min = img->has_max = true;
  img->min = 0;
  img->max = 255;
  lab->name = sw_strdup("label");
  lab->kind = SW_FEATURE_KIND_INT64;
  lab->required = true;
  lab->is_label = true;
  bool fashion = strcasestr(p->opt->path, "fashion") != NULL && max_label < 10;
  sw_status st = (img->name && lab->name) ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!st) st = sw__numbered_classes(lab, fashion ? 10 : (size_t)max_label + 1);
  for (size_t k = 0; !st && fashion && k < 10; k++) {
    sw_free(lab->class_names[k]);
    lab->class_names[k] = sw_strdup(fashion_classes[k]);
    if (!lab->class_names[k]) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  if (st) {
    sw_schema_free(s);
    return st;
  }
  p->schema = s;
  return SW_STATUS_OK;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists image files: the path itself, or the *images-idx3-ubyte* files in a directory. */
static sw_status find_image_files(const char *path, char ***files, size_t *n) {
  *files = NULL;
  *n = 0;
  if (!sw_path_is_dir(path)) {
    *files = sw_malloc(sizeof **files);
    if (!*files || !((*files)[0] = sw_strdup(path))) return sw_error(SW_STATUS_NOMEM, "out of memory");
    *n = 1;
    return SW_STATUS_OK;
  }
  DIR *d = opendir(path);
  if (!d) return sw_error(SW_STATUS_IO, "opendir %s: %s", path, strerror(errno));
  struct dirent *e;
  sw_status st = SW_STATUS_OK;
  while ((e = readdir(d)) != NULL) {
    if (!strstr(e->d_name, "images-idx3-ubyte")) continue;
    char **v = sw_realloc(*files, (*n + 1) * sizeof *v);
    if (!v) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      break;
    }
    *files = v;
    v[*n] = sw_path_join(path, e->d_name);
    if (!v[*n]) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      break;
    }
    (*n)++;
  }
  closedir(d);
  if (!st && *n == 0) st = sw_error(SW_STATUS_NOT_FOUND, "%s holds no *images-idx3-ubyte* file", path);
  if (!st) qsort(*files, *n, sizeof **files, cmp_str);
  return st;
}

sw_status sw__ingest_idx(sw__prep *p) {
  char **files = NULL;
  size_t n_files = 0;
  sw_status st = find_image_files(p->opt->path, &files, &n_files);
  idx_file *imgs = sw_calloc(n_files ? n_files : 1, sizeof *imgs);
  idx_file *labs = sw_calloc(n_files ? n_files : 1, sizeof *labs);
  const char **names = sw_calloc(n_files ? n_files : 1, sizeof *names);
  if (!st && (!imgs || !labs || !names)) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st) goto out;
  int max_label = 0;
  uint32_t rows = 0, cols = 0;
  for (size_t f = 0; f < n_files; f++) {
    const char *img_path = files[f];
    char *lab_path = sw_strdup(img_path);
    if (!lab_path) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
    char *at = strstr(lab_path, "images-idx3");
    if (!at) {
      sw_free(lab_path);
      st = sw_error(SW_STATUS_INVALID, "%s: name has no 'images-idx3' to find its labels file by", img_path);
      goto out;
    }
    memcpy(at, "labels-idx1", 11);
    if (!sw_path_exists(lab_path)) {
      st = sw_error(SW_STATUS_NOT_FOUND, "labels file %s for %s not found", lab_path, img_path);
      sw_free(lab_path);
      goto out;
    }
    st = read_idx(img_path, 3, &imgs[f]);
    if (!st) st = read_idx(lab_path, 1, &labs[f]);
    if (!st && labs[f].dims[0] != imgs[f].dims[0])
      st = sw_error(SW_STATUS_FORMAT, "%s has %u labels for %u images in %s", lab_path, labs[f].dims[0],
                    imgs[f].dims[0], img_path);
    if (!st && f > 0 && (imgs[f].dims[1] != rows || imgs[f].dims[2] != cols))
      st = sw_error(SW_STATUS_FORMAT, "%s: images of %ux%u, the others are %ux%u", img_path, imgs[f].dims[1],
                    imgs[f].dims[2], rows, cols);
    if (!st) st = sw__prep_source(p, img_path, &names[f]);
    if (!st) {
      const char *ignored;
      st = sw__prep_source(p, lab_path, &ignored);
    }
    sw_free(lab_path);
    if (st) goto out;
    rows = imgs[f].dims[1];
    cols = imgs[f].dims[2];
    const uint8_t *l = labs[f].data + 8;
    for (uint32_t i = 0; i < labs[f].dims[0]; i++)
      if (l[i] > max_label && l[i] < 10) max_label = l[i];
  }
  if (!p->schema) {
    st = build_schema(p, rows, cols, max_label);
    if (st) goto out;
  }
  for (size_t f = 0; f < n_files; f++) {
    const char *base = strrchr(files[f], '/');
    base = base ? base + 1 : files[f];
    int fixed = is_test_prefix(base) ? SW__SPLIT_TEST : -1;
    if (fixed == SW__SPLIT_TEST) p->source_has_test = true;
    size_t img_bytes = (size_t)rows * cols;
    const uint8_t *pix = imgs[f].data + 16;
    const uint8_t *lab = labs[f].data + 8;
    for (uint32_t i = 0; i < imgs[f].dims[0]; i++) {
      sw_example ex = {0};
      sw_bytes b = {(uint8_t *)pix + (size_t)i * img_bytes, img_bytes};
      int64_t y = lab[i];
      st = sw_example_add_bytes(&ex, "image", &b, 1);
      if (!st) st = sw_example_add_int64(&ex, "label", &y, 1);
      if (st) {
        sw_example_clear(&ex);
        goto out;
      }
      sw__location loc = {names[f], 0, 16 + (uint64_t)i * img_bytes};
      st = sw__prep_add(p, &loc, &ex, fixed, NULL, 0);
      if (st) goto out;
    }
  }
out:
  for (size_t f = 0; f < n_files; f++) {
    if (imgs) sw_free(imgs[f].data);
    if (labs) sw_free(labs[f].data);
    sw_free(files[f]);
  }
  sw_free(imgs);
  sw_free(labs);
  sw_free(names);
  sw_free(files);
  return st;
}
