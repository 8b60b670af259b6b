/* Pieces of schema inference that every source shares: counting the distinct strings
 * of a feature, choosing its domain from them, and numbering class labels. */
#include <stdlib.h>
#include <string.h>

#include "data/data_int.h"

#define MAX_TRACKED_VALUES 10000 /* distinct strings counted per feature */
#define MAX_DOMAIN 50            /* a feature with more recurring values has no domain */

void sw__value_counts_add(sw__value_counts *vc, const uint8_t *s, size_t n) {
  vc->total++;
  if (vc->too_many) return;
  if (memchr(s, 0, n) || !sw__utf8_valid(s, n)) {
    vc->too_many = true; /* binary values: not a categorical feature */
    return;
  }
  if (!vc->counts) vc->counts = json_object();
  char *key = sw_strndup((const char *)s, n);
  if (!key || !vc->counts) {
    sw_free(key);
    vc->too_many = true;
    return;
  }
  json_t *cur = json_object_get(vc->counts, key);
  if (!cur && json_object_size(vc->counts) >= MAX_TRACKED_VALUES) vc->too_many = true;
  else json_object_set_new(vc->counts, key, json_integer(json_integer_value(cur) + 1));
  sw_free(key);
}

void sw__value_counts_free(sw__value_counts *vc) {
  json_decref(vc->counts);
  memset(vc, 0, sizeof *vc);
}

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

sw_status sw__value_counts_list(const sw__value_counts *vc, bool all, char ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (vc->too_many) return SW_STATUS_OK;
  size_t distinct = json_object_size(vc->counts), k = 0;
  uint64_t covered = 0;
  char **v = sw_calloc(distinct ? distinct : 1, sizeof *v);
  if (!v) return sw_error(SW_STATUS_NOMEM, "out of memory");
  const char *key;
  json_t *cnt;
  json_object_foreach(vc->counts, key, cnt) {
    if (!all && json_integer_value(cnt) < 2) continue;
    covered += (uint64_t)json_integer_value(cnt);
    v[k] = sw_strdup(key);
    if (!v[k]) {
      for (size_t i = 0; i < k; i++) sw_free(v[i]);
      sw_free(v);
      return sw_error(SW_STATUS_NOMEM, "out of memory");
    }
    k++;
  }
  if (!all && (k == 0 || k > MAX_DOMAIN || (double)covered < 0.99 * (double)vc->total)) {
    for (size_t i = 0; i < k; i++) sw_free(v[i]);
    sw_free(v);
    return SW_STATUS_OK; /* not categorical: no domain */
  }
  qsort(v, k, sizeof *v, cmp_strp);
  *out = v;
  *n = k;
  return SW_STATUS_OK;
}

sw_status sw__numbered_classes(sw_feature_spec *f, size_t n) {
  f->class_names = sw_calloc(n ? n : 1, sizeof *f->class_names);
  if (!f->class_names) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t k = 0; k < n; k++) {
    f->class_names[k] = sw_asprintf("%zu", k);
    if (!f->class_names[k]) return sw_error(SW_STATUS_NOMEM, "out of memory");
    f->n_classes = k + 1;
  }
  return SW_STATUS_OK;
}
