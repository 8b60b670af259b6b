/* Shared by the body parser's unit test and its fuzz target: does sw_body_parse read a
 * text as jansson reads it? The same verdict (jansson taking only an object or an array
 * at the top, as the server does), and when both read it the same tree, a numeric array
 * standing for jansson's nested list of the same numbers. Where the two differ by
 * design the verdict is not compared: NaN and Infinity (numbers to us, as to TensorFlow
 * Serving; jansson refuses them), nesting past our 512 levels (jansson's limit is 2048)
 * and NUL bytes (not JSON: we refuse them; jansson skips one between tokens, reading
 * "[1\0]" as [1]). */
#ifndef SW_TEST_JSON_LIKE_JANSSON_H
#define SW_TEST_JSON_LIKE_JANSSON_H

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "slipway/serve.h"

static bool sw_test_same_tree(const sw_body *b, const sw_jv *v, const json_t *j) {
  const sw_numarr *a = sw_body_numarr(b, v);
  if (a) { /* walk jansson's nested lists in order */
    size_t at = 0;
    const json_t *stack[SW_NN_MAX_RANK + 1];
    size_t idx[SW_NN_MAX_RANK + 1];
    int d = 0;
    stack[0] = j;
    idx[0] = 0;
    while (d >= 0) {
      if (!json_is_array(stack[d])) return false;
      if (idx[d] == json_array_size(stack[d])) {
        d--;
        if (d >= 0) idx[d]++;
        continue;
      }
      const json_t *e = json_array_get(stack[d], idx[d]);
      if (json_is_array(e)) {
        if (d + 1 > SW_NN_MAX_RANK) return false;
        stack[++d] = e;
        idx[d] = 0;
        continue;
      }
      if (!json_is_number(e) || at >= a->n || memcmp(&a->v[at], &(double){json_number_value(e)}, sizeof(double))) return false;
      at++;
      idx[d]++;
    }
    return at == a->n;
  }
  switch (v->type) {
    case SW_JV_NULL: return json_is_null(j);
    case SW_JV_TRUE: return json_is_true(j);
    case SW_JV_FALSE: return json_is_false(j);
    case SW_JV_NUMBER:
      if (v->is_int) return json_is_integer(j) && json_integer_value(j) == v->i;
      return json_is_real(j) && !memcmp(&v->num, &(double){json_real_value(j)}, sizeof(double));
    case SW_JV_STRING:
      return json_is_string(j) && json_string_length(j) == v->n && !memcmp(json_string_value(j), v->str, v->n);
    case SW_JV_ARRAY:
      if (!json_is_array(j) || json_array_size(j) != v->n) return false;
      for (size_t i = 0; i < v->n; i++)
        if (!sw_test_same_tree(b, &v->items[i], json_array_get(j, i))) return false;
      return true;
    case SW_JV_OBJECT: {
      if (!json_is_object(j)) return false;
      size_t distinct = 0;
      for (size_t i = 0; i < v->n; i++) {
        const sw_jv *last = sw_jv_get(v, v->members[i].key);
        if (last != &v->members[i].value) continue; /* an earlier duplicate: replaced */
        distinct++;
        const json_t *jv = json_object_get(j, v->members[i].key);
        if (!jv || !sw_test_same_tree(b, last, jv)) return false;
      }
      return distinct == json_object_size(j);
    }
    default: return false;
  }
}

static bool sw_test_like_jansson(const char *text, size_t len) {
  sw_body b;
  bool ours = sw_body_parse(text, len, &b) == SW_STATUS_OK;
  bool deep = !ours && strstr(sw_last_error(), "nested too deep");
  json_error_t err;
  json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &err);
  bool theirs = j && (json_is_object(j) || json_is_array(j));
  bool special = memmem(text, len, "NaN", 3) || memmem(text, len, "Infinity", 8) || memchr(text, 0, len);
  bool ok = ours == theirs || special || deep;
  if (ours && theirs) ok = sw_test_same_tree(&b, b.root, j);
  if (ours) sw_body_free(&b);
  json_decref(j);
  return ok;
}

#endif
