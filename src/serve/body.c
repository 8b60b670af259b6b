/* Request bodies of the model server. The numbers of a request are its hot path: the
 * JSON parser here lifts every rectangular array of numbers out whole (parsed straight
 * into doubles, exactly as strtod would), and builds the few nodes around them in one
 * arena. jansson took 2.5 of the 4 µs a v2 binary request spent parsing its 230-byte
 * header, mostly in allocation. Then the TF Serving (:predict, :classify), v2 (infer,
 * with the binary tensor extension) and feedback shapes. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/serve.h"

#define MAX_ARRAYS 4096 /* numeric arrays of one body; past them, plain arrays */

#define MAX_DEPTH 512

typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  max_align_t data[];
} chunk;

typedef struct {
  const char *p, *end;
  chunk *arena;
  sw_buf values, members, str; /* stacks of the open arrays' items and objects' members */
  sw_numarr *arrays;
  size_t n_arrays, cap_arrays;
  int depth;
  const char *err, *err_at;
  bool nomem;
} scan;

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                       1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* One number literal at *pp (JSON grammar, plus NaN, Infinity, -Infinity). The value is
 * strtod's: Clinger's fast path when the digits fit 2^53 and the power of ten is exact
 * (then one correctly rounded operation is the correctly rounded result), strtod
 * otherwise. Integer literals go through int64, as jansson reads them (so "-0" is +0).
 * False when the text is not a number this path takes (malformed, or out of range). */
static bool parse_number(const char **pp, const char *end, double *v, bool *is_int) {
  const char *p = *pp, *start = p;
  bool neg = false;
  if (p < end && *p == '-') {
    neg = true;
    p++;
  }
  if (end - p >= 3 && !memcmp(p, "NaN", 3) && !neg) {
    *v = NAN;
    *is_int = false;
    *pp = p + 3;
    return true;
  }
  if (end - p >= 8 && !memcmp(p, "Infinity", 8)) {
    *v = neg ? -INFINITY : INFINITY;
    *is_int = false;
    *pp = p + 8;
    return true;
  }
  if (p >= end || !is_digit(*p)) return false;
  /* up to 19 significant digits in mant; the scale of what is kept in scale10 */
  uint64_t mant = 0;
  int sig = 0, int_digits = 0;
  long scale10 = 0;
  bool integer = true, truncated = false;
  if (*p == '0') {
    p++;
    if (p < end && is_digit(*p)) return false; /* no leading zeros */
  } else {
    while (p < end && is_digit(*p)) {
      if (sig < 19) {
        mant = mant * 10 + (uint64_t)(*p - '0');
        sig++;
      } else {
        scale10++;
        truncated |= *p != '0';
      }
      int_digits++;
      p++;
    }
  }
  if (p < end && *p == '.') {
    integer = false;
    p++;
    if (p >= end || !is_digit(*p)) return false;
    while (p < end && is_digit(*p)) {
      if (!mant && *p == '0') {
        scale10--;
      } else if (sig < 19) {
        mant = mant * 10 + (uint64_t)(*p - '0');
        sig++;
        scale10--;
      } else {
        truncated |= *p != '0';
      }
      p++;
    }
  }
  long exp10 = 0;
  if (p < end && (*p == 'e' || *p == 'E')) {
    integer = false;
    p++;
    bool eneg = false;
    if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
    if (p >= end || !is_digit(*p)) return false;
    while (p < end && is_digit(*p)) {
      if (exp10 < 100000) exp10 = exp10 * 10 + (*p - '0');
      p++;
    }
    if (eneg) exp10 = -exp10;
  }
  *pp = p;
  *is_int = integer;
  if (integer) {
    /* past 2^53 an integer is not exact in a double: the plain path reads it as int64 */
    if (int_digits > 18) return false;
    int64_t iv = neg ? -(int64_t)mant : (int64_t)mant;
    if (mant > (1ull << 53)) return false; /* keep all_int exact in a double */
    *v = (double)iv;
    return true;
  }
  long e = exp10 + scale10;
  if (!truncated && mant <= (1ull << 53) && e >= -22 && e <= 22) {
    double d = (double)mant;
    d = e < 0 ? d / pow10_exact[-e] : d * pow10_exact[e];
    *v = neg ? -d : d;
    return true;
  }
  /* the rest: strtod on a NUL-terminated copy of the literal (on the heap when long) */
  char small[128];
  size_t n = (size_t)(p - start);
  char *tmp = n < sizeof small ? small : sw_malloc(n + 1);
  if (!tmp) return false;
  memcpy(tmp, start, n);
  tmp[n] = '\0';
  errno = 0;
  double d = strtod(tmp, NULL);
  bool overflow = errno == ERANGE && isinf(d);
  if (tmp != small) sw_free(tmp);
  if (overflow) return false; /* "real number overflow", as jansson says */
  *v = d;
  return true;
}

static void skip_ws(const char **pp, const char *end) {
  const char *p = *pp;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  *pp = p;
}

/* Tries to read a rectangular array of numbers at *pp ('['). On success appends it to
 * s->arrays and moves *pp past it; otherwise leaves everything as it was. */
static bool numeric_array(scan *s, const char **pp) {
  const char *p = *pp, *end = s->end;
  int64_t count[SW_NN_MAX_RANK] = {0};
  int64_t shape[SW_NN_MAX_RANK];
  int rank = -1, depth = 0;
  sw_buf vals = {0};
  bool all_int = true;
  for (int d = 0; d < SW_NN_MAX_RANK; d++) shape[d] = -1;
  for (;;) {
    skip_ws(&p, end);
    if (p >= end) goto fail;
    if (*p == '[') {
      if (depth == SW_NN_MAX_RANK) goto fail;
      if (rank >= 0 && depth >= rank) goto fail; /* deeper than the first leaf */
      count[depth++] = 0;
      p++;
      skip_ws(&p, end);
      if (p < end && *p == ']') goto fail; /* empty arrays: plain arrays */
      continue;
    }
    /* a leaf number at this depth */
    if (depth == 0) goto fail;
    if (rank < 0) rank = depth;
    else if (depth != rank) goto fail;
    double v;
    bool is_int;
    if (!parse_number(&p, end, &v, &is_int)) goto fail;
    all_int &= is_int;
    if (vals.len + sizeof v > vals.cap) {
      /* a literal takes at least two bytes with its comma: the rest of the body bounds
       * the count, and a quarter of it is a good first guess */
      size_t guess = (size_t)(end - p) / 4 * sizeof v + 16 * sizeof v;
      if (sw_buf_reserve(&vals, vals.cap ? vals.cap : guess)) goto fail;
    }
    memcpy(vals.data + vals.len, &v, sizeof v);
    vals.len += sizeof v;
    count[depth - 1]++;
    /* after a value: ',' or one or more ']' each closing a level */
    for (;;) {
      skip_ws(&p, end);
      if (p >= end) goto fail;
      if (*p == ',') {
        p++;
        break;
      }
      if (*p != ']') goto fail;
      p++;
      int d = depth - 1;
      if (shape[d] < 0) shape[d] = count[d];
      else if (shape[d] != count[d]) goto fail; /* ragged */
      depth--;
      if (depth == 0) goto done;
      count[depth - 1]++;
    }
    skip_ws(&p, end);
    if (p < end && *p == '[') {
      /* the next element of an outer level: it must open down to the leaf level again */
      continue;
    }
  }
done:
  if (s->n_arrays == s->cap_arrays) {
    if (s->n_arrays >= MAX_ARRAYS) goto fail;
    size_t cap = s->cap_arrays ? s->cap_arrays * 2 : 8;
    sw_numarr *a = sw_realloc(s->arrays, cap * sizeof *a);
    if (!a) goto fail;
    s->arrays = a;
    s->cap_arrays = cap;
  }
  sw_numarr *a = &s->arrays[s->n_arrays++];
  memset(a, 0, sizeof *a);
  a->v = (double *)vals.data;
  a->n = vals.len / sizeof(double);
  a->rank = rank;
  for (int d = 0; d < rank; d++) a->shape[d] = shape[d];
  a->all_int = all_int;
  *pp = p;
  return true;
fail:
  sw_buf_free(&vals);
  return false;
}

/* ---- the JSON parser -----------------------------------------------------------------
 * A recursive descent over the body into nodes allocated from one arena (a few
 * allocations for the whole body, freed at once). At each '[' the numeric-array path
 * is tried first; what it refuses (ragged, mixed, empty, or past its limits) is parsed
 * as a plain array, whose inner arrays may again be numeric. Strings are unescaped and
 * must be valid UTF-8 without NUL; integers must fit int64; reals go through
 * parse_number (strtod's value); NaN, Infinity and -Infinity are numbers. Duplicate keys
 * are kept, and a lookup finds the last, as jansson's replace does. */

static void *arena_alloc(scan *s, size_t bytes) {
  bytes = (bytes + 15) & ~(size_t)15;
  chunk *c = s->arena;
  if (!c || c->cap - c->used < bytes) {
    size_t cap = c ? c->cap * 2 : 4096;
    if (cap < bytes) cap = bytes;
    if (cap > (1u << 20) && bytes <= (1u << 20)) cap = 1u << 20;
    c = sw_malloc(sizeof *c + cap);
    if (!c) {
      s->nomem = true;
      return NULL;
    }
    c->next = s->arena;
    c->used = 0;
    c->cap = cap;
    s->arena = c;
  }
  void *p = (char *)c->data + c->used;
  c->used += bytes;
  return p;
}

static void arena_free(chunk *c) {
  while (c) {
    chunk *next = c->next;
    sw_free(c);
    c = next;
  }
}

static bool fail(scan *s, const char *at, const char *why) {
  if (!s->err) {
    s->err = why;
    s->err_at = at;
  }
  return false;
}

static int hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v << 4 | d;
  }
  return v;
}

static void put_utf8(sw_buf *b, unsigned v, bool *nomem) {
  unsigned char u[4];
  size_t n;
  if (v < 0x80) u[0] = (unsigned char)v, n = 1;
  else if (v < 0x800) u[0] = (unsigned char)(0xc0 | v >> 6), u[1] = (unsigned char)(0x80 | (v & 0x3f)), n = 2;
  else if (v < 0x10000)
    u[0] = (unsigned char)(0xe0 | v >> 12), u[1] = (unsigned char)(0x80 | ((v >> 6) & 0x3f)), u[2] = (unsigned char)(0x80 | (v & 0x3f)), n = 3;
  else
    u[0] = (unsigned char)(0xf0 | v >> 18), u[1] = (unsigned char)(0x80 | ((v >> 12) & 0x3f)),
    u[2] = (unsigned char)(0x80 | ((v >> 6) & 0x3f)), u[3] = (unsigned char)(0x80 | (v & 0x3f)), n = 4;
  if (sw_buf_append(b, u, n)) *nomem = true;
}

/* A string at s->p ('"'), unescaped into the arena, NUL-terminated. */
static bool string(scan *s, const char **out, size_t *len) {
  const char *p = s->p + 1, *end = s->end, *run = p;
  while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80) p++;
  s->str.len = 0;
  bool plain = p < end && *p == '"';
  while (!plain) {
    if (sw_buf_append(&s->str, run, (size_t)(p - run))) return s->nomem = true, false;
    if (p >= end) return fail(s, p, "premature end of input in a string");
    unsigned char c = (unsigned char)*p;
    if (c == '"') break;
    if (c < 0x20) return fail(s, p, "control character in a string");
    if (c >= 0x80) {
      size_t n = sw_utf8_len((const unsigned char *)p, (const unsigned char *)end);
      if (!n) return fail(s, p, "invalid UTF-8 in a string");
      if (sw_buf_append(&s->str, p, n)) return s->nomem = true, false;
      p += n;
    } else if (c == '\\') {
      if (end - p < 2) return fail(s, p, "premature end of input in a string");
      char e = p[1];
      const char *sub = strchr("\"\\/bfnrt", e);
      if (e && sub) {
        char ch = "\"\\/\b\f\n\r\t"[sub - "\"\\/bfnrt"];
        if (sw_buf_append(&s->str, &ch, 1)) return s->nomem = true, false;
        p += 2;
      } else if (e == 'u') {
        int v = end - p >= 6 ? hex4(p + 2) : -1;
        if (v < 0) return fail(s, p, "invalid \\u escape");
        p += 6;
        unsigned cp = (unsigned)v;
        if (cp >= 0xd800 && cp <= 0xdbff) { /* a high surrogate needs its low one */
          int lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
          if (lo < 0xdc00 || lo > 0xdfff) return fail(s, p - 6, "invalid \\u surrogate pair");
          cp = 0x10000 + ((cp - 0xd800) << 10) + (unsigned)(lo - 0xdc00);
          p += 6;
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
          return fail(s, p - 6, "invalid \\u surrogate pair");
        }
        if (!cp) return fail(s, p - 6, "\\u0000 is not allowed");
        put_utf8(&s->str, cp, &s->nomem);
        if (s->nomem) return false;
      } else {
        return fail(s, p, "invalid escape in a string");
      }
    } else {
      p++;
    }
    run = p;
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80) p++;
  }
  const char *src = plain ? run : (const char *)s->str.data;
  size_t n = plain ? (size_t)(p - run) : s->str.len;
  char *dst = arena_alloc(s, n + 1);
  if (!dst) return false;
  if (n) memcpy(dst, src, n);
  dst[n] = '\0';
  *out = dst;
  *len = n;
  s->p = p + 1;
  return true;
}

/* A number at s->p: integers exactly (int64, "too big" past it), reals as strtod. */
static bool number(scan *s, sw_jv *out) {
  const char *p = s->p, *q = p;
  if (q < s->end && *q == '-') q++;
  const char *digits = q;
  while (q < s->end && is_digit(*q)) q++;
  bool integer = q > digits && (q >= s->end || (*q != '.' && *q != 'e' && *q != 'E'));
  if (integer) {
    if (*digits == '0' && q - digits > 1) return fail(s, p, "invalid number (leading zero)");
    bool neg = *p == '-';
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (const char *d = digits; d < q; d++) {
      uint64_t digit = (uint64_t)(*d - '0');
      if (v > (limit - digit) / 10) return fail(s, p, "too big integer");
      v = v * 10 + digit;
    }
    out->type = SW_JV_NUMBER;
    out->is_int = true;
    out->i = neg ? (int64_t)(0 - v) : (int64_t)v;
    out->num = (double)out->i;
    s->p = q;
    return true;
  }
  double v;
  bool is_int;
  q = p;
  if (!parse_number(&q, s->end, &v, &is_int)) return fail(s, p, "invalid number, or one out of range");
  out->type = SW_JV_NUMBER;
  out->is_int = false;
  out->num = v;
  s->p = q;
  return true;
}

static bool value(scan *s, sw_jv *out);

static bool word(scan *s, const char *w, size_t n, sw_jv_type type, sw_jv *out) {
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n)) return fail(s, s->p, "invalid token");
  s->p += n;
  out->type = type;
  return true;
}

/* Moves the top `count` entries of a stack (elements of size esz) into the arena. */
static void *settle(scan *s, sw_buf *stack, size_t start, size_t esz, size_t *count) {
  *count = (stack->len - start) / esz;
  void *dst = *count ? arena_alloc(s, stack->len - start) : NULL;
  if (*count && !dst) return NULL;
  if (*count) memcpy(dst, stack->data + start, stack->len - start);
  stack->len = start;
  return dst;
}

/* After an item of a list that `close` ends: 1 when a ',' says another follows, 0 at
 * `close`, -1 (the error set) otherwise. */
static int after_item(scan *s, char close, const char *open, const char *why) {
  skip_ws(&s->p, s->end);
  if (s->p < s->end && (*s->p == ',' || *s->p == close)) return *s->p++ == ',';
  fail(s, s->p < s->end ? s->p : open, why);
  return -1;
}

/* At an opening bracket: 0 (and past the closer) when the list is empty, else 1. */
static int first_item(scan *s, char close) {
  s->p++;
  skip_ws(&s->p, s->end);
  if (s->p < s->end && *s->p == close) {
    s->p++;
    return 0;
  }
  return 1;
}

static bool array(scan *s, sw_jv *out) {
  const char *open = s->p;
  size_t start = s->values.len;
  for (int more = first_item(s, ']'); more;) {
    sw_jv item;
    if (!value(s, &item)) return false;
    if (sw_buf_append(&s->values, &item, sizeof item)) return s->nomem = true, false;
    if ((more = after_item(s, ']', open, "',' or ']' expected")) < 0) return false;
  }
  out->type = SW_JV_ARRAY;
  out->items = settle(s, &s->values, start, sizeof(sw_jv), &out->n);
  return !s->nomem;
}

static bool object(scan *s, sw_jv *out) {
  const char *open = s->p;
  size_t start = s->members.len;
  for (int more = first_item(s, '}'); more;) {
    sw_jv_member m;
    skip_ws(&s->p, s->end);
    if (s->p >= s->end || *s->p != '"') return fail(s, s->p < s->end ? s->p : open, "string or '}' expected");
    if (!string(s, &m.key, &m.key_len)) return false;
    skip_ws(&s->p, s->end);
    if (s->p >= s->end || *s->p != ':') return fail(s, s->p < s->end ? s->p : open, "':' expected");
    s->p++;
    if (!value(s, &m.value)) return false;
    if (sw_buf_append(&s->members, &m, sizeof m)) return s->nomem = true, false;
    if ((more = after_item(s, '}', open, "',' or '}' expected")) < 0) return false;
  }
  out->type = SW_JV_OBJECT;
  out->members = settle(s, &s->members, start, sizeof(sw_jv_member), &out->n);
  return !s->nomem;
}

static bool value(scan *s, sw_jv *out) {
  memset(out, 0, sizeof *out);
  skip_ws(&s->p, s->end);
  if (s->p >= s->end) return fail(s, s->p, "premature end of input");
  if (++s->depth > MAX_DEPTH) return fail(s, s->p, "nested too deep");
  bool ok;
  switch (*s->p) {
    case '{': ok = object(s, out); break;
    case '[': {
      const char *q = s->p;
      if (numeric_array(s, &q)) {
        out->type = SW_JV_NUMARR;
        out->i = (int64_t)(s->n_arrays - 1);
        s->p = q;
        ok = true;
      } else {
        ok = !s->nomem && array(s, out);
      }
      break;
    }
    case '"':
      out->type = SW_JV_STRING;
      ok = string(s, &out->str, &out->n);
      break;
    case 't': ok = word(s, "true", 4, SW_JV_TRUE, out); break;
    case 'f': ok = word(s, "false", 5, SW_JV_FALSE, out); break;
    case 'n': ok = word(s, "null", 4, SW_JV_NULL, out); break;
    default:
      ok = *s->p == '-' || *s->p == 'N' || *s->p == 'I' || is_digit(*s->p) ? number(s, out) : fail(s, s->p, "invalid token");
      break;
  }
  s->depth--;
  return ok;
}

static void free_arrays(sw_numarr *a, size_t n) {
  for (size_t i = 0; i < n; i++) sw_free(a[i].v);
  sw_free(a);
}

sw_status sw_body_parse(const char *text, size_t len, sw_body *out) {
  memset(out, 0, sizeof *out);
  scan s = {.p = text, .end = text + len};
  sw_jv *root = arena_alloc(&s, sizeof *root);
  bool ok = root != NULL;
  if (ok) {
    skip_ws(&s.p, s.end);
    if (s.p >= s.end || (*s.p != '{' && *s.p != '[')) ok = fail(&s, s.p, "'[' or '{' expected");
  }
  if (ok) ok = value(&s, root);
  if (ok) {
    skip_ws(&s.p, s.end);
    if (s.p < s.end) ok = fail(&s, s.p, "end of input expected");
  }
  sw_buf_free(&s.values);
  sw_buf_free(&s.members);
  sw_buf_free(&s.str);
  if (!ok) {
    arena_free(s.arena);
    free_arrays(s.arrays, s.n_arrays);
    if (s.nomem || !s.err) return sw_error(SW_STATUS_NOMEM, "out of memory parsing the body");
    int line = 1;
    const char *bol = text;
    for (const char *q = text; q < s.err_at; q++)
      if (*q == '\n') line++, bol = q + 1;
    return sw_error(SW_STATUS_FORMAT, "the body is not valid JSON: line %d column %d: %s", line, (int)(s.err_at - bol) + 1,
                    s.err);
  }
  out->root = root;
  out->arrays = s.arrays;
  out->n_arrays = s.n_arrays;
  out->arena = s.arena;
  return SW_STATUS_OK;
}

void sw_body_free(sw_body *b) {
  if (!b) return;
  arena_free(b->arena);
  free_arrays(b->arrays, b->n_arrays);
  memset(b, 0, sizeof *b);
}

const sw_numarr *sw_body_numarr(const sw_body *b, const sw_jv *v) {
  return v && v->type == SW_JV_NUMARR && (size_t)v->i < b->n_arrays ? &b->arrays[v->i] : NULL;
}

const sw_jv *sw_jv_get(const sw_jv *obj, const char *key) {
  if (!obj || obj->type != SW_JV_OBJECT) return NULL;
  size_t n = strlen(key);
  for (size_t i = obj->n; i-- > 0;)
    if (obj->members[i].key_len == n && !memcmp(obj->members[i].key, key, n)) return &obj->members[i].value;
  return NULL;
}

const sw_jv *sw_jv_single(const sw_jv *obj) {
  if (!obj || obj->type != SW_JV_OBJECT || !obj->n) return NULL;
  const sw_jv_member *first = &obj->members[0];
  for (size_t i = 1; i < obj->n; i++)
    if (obj->members[i].key_len != first->key_len || memcmp(obj->members[i].key, first->key, first->key_len)) return NULL;
  return &obj->members[obj->n - 1].value;
}

bool sw_serve_name_valid(const char *name, size_t len) {
  if (len == 0 || len > 128) return false;
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || (i > 0 && (c == '.' || c == '_' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

/* ---- tensors out of bodies ------------------------------------------------------- */

void sw_serve_inputs_clear(sw_serve_inputs *in, size_t n_in) {
  if (!in) return;
  for (size_t k = 0; k < n_in && k < SW_SERVE_MAX_IO; k++) sw_free(in->in[k]);
  sw_free(in->id);
  memset(in, 0, sizeof *in);
}

/* Stores value v as element i of a buffer of the input's dtype; false when an integer
 * input is given something else. */
static bool store(const sw_serve_io *io, void *dst, int64_t i, double v, bool is_int) {
  if (io->dtype == SW_DTYPE_F32) {
    ((float *)dst)[i] = (float)v;
    return true;
  }
  if (!is_int) return false;
  ((int64_t *)dst)[i] = (int64_t)v;
  return true;
}

/* Writes the numbers of a nested list (or numeric array) in order; *n counts them
 * (past cap: stops at cap + 1). */
static bool flatten(const sw_body *b, const sw_jv *j, const sw_serve_io *io, void *dst, int64_t cap, int64_t *n,
                    const char **why) {
  const sw_numarr *a = sw_body_numarr(b, j);
  if (a) {
    if (io->dtype != SW_DTYPE_F32 && !a->all_int) {
      *why = "needs integers";
      return false;
    }
    for (size_t i = 0; i < a->n; i++) {
      if (*n >= cap) {
        *n = cap + 1;
        return true;
      }
      store(io, dst, (*n)++, a->v[i], true);
    }
    return true;
  }
  if (sw_jv_is_array(j)) {
    size_t i;
    const sw_jv *e;
    for (i = 0; i < sw_jv_size(j) && (e = sw_jv_at(j, i)); i++) if (!flatten(b, e, io, dst, cap, n, why)) return false;
    return true;
  }
  if (!sw_jv_is_number(j)) {
    *why = "holds something other than numbers";
    return false;
  }
  if (*n >= cap) {
    *n = cap + 1;
    return true;
  }
  if (!store(io, dst, *n, sw_jv_num(j), sw_jv_is_integer(j))) {
    *why = "needs integers";
    return false;
  }
  (*n)++;
  return true;
}

static void *alloc_input(const sw_serve_io *io, int64_t rows) {
  return sw_calloc((size_t)(rows * io->per), sw_dtype_size(io->dtype));
}

static sw_status count_mismatch(const char *where, const sw_serve_io *io, int64_t n) {
  return sw_error(SW_STATUS_FORMAT, "%s: input '%s' needs %lld values, got %s%lld", where, io->name, (long long)io->per,
                  n > io->per ? "more than " : "", (long long)(n > io->per ? io->per : n));
}

/* A batch of examples of one input: a numeric array [rows, ...] or a list of rows, each
 * a (nested) list, a numeric array or a number. rows_want < 0: take the count from v. */
static sw_status fill_batch(const sw_body *b, const sw_jv *v, const sw_serve_io *io, int64_t *rows, void **dst,
                            const char *what) {
  const sw_numarr *a = sw_body_numarr(b, v);
  int64_t n_rows;
  if (a) {
    n_rows = a->shape[0]; /* a numeric array has rank 1 at least */
  } else if (sw_jv_is_array(v)) {
    n_rows = (int64_t)sw_jv_size(v);
  } else {
    return sw_error(SW_STATUS_FORMAT, "%s: input '%s' needs a list of examples", what, io->name);
  }
  if (n_rows == 0) return sw_error(SW_STATUS_FORMAT, "%s: no examples", what);
  if (*rows >= 0 && *rows != n_rows)
    return sw_error(SW_STATUS_FORMAT, "%s: input '%s' has %lld examples, another input %lld", what, io->name,
                    (long long)n_rows, (long long)*rows);
  *rows = n_rows;
  void *buf = alloc_input(io, n_rows);
  if (!buf) return sw_error(SW_STATUS_NOMEM, "out of memory");
  *dst = buf;
  if (a) {
    if ((int64_t)a->n != n_rows * io->per) {
      int64_t got = (int64_t)a->n / n_rows;
      return count_mismatch(what, io, got);
    }
    if (io->dtype != SW_DTYPE_F32 && !a->all_int) return sw_error(SW_STATUS_FORMAT, "%s: input '%s' needs integers", what, io->name);
    if (io->dtype == SW_DTYPE_F32) {
      float *f = buf;
      for (size_t i = 0; i < a->n; i++) f[i] = (float)a->v[i];
    } else {
      int64_t *q = buf;
      for (size_t i = 0; i < a->n; i++) q[i] = (int64_t)a->v[i];
    }
    return SW_STATUS_OK;
  }
  size_t esz = sw_dtype_size(io->dtype);
  for (int64_t r = 0; r < n_rows; r++) {
    int64_t n = 0;
    const char *why = "";
    if (!flatten(b, sw_jv_at(v, (size_t)r), io, (uint8_t *)buf + (size_t)(r * io->per) * esz, io->per, &n, &why))
      return sw_error(SW_STATUS_FORMAT, "%s %lld: input '%s' %s", what, (long long)r, io->name, why);
    if (n != io->per) {
      char where[64];
      snprintf(where, sizeof where, "%s %lld", what, (long long)r);
      return count_mismatch(where, io, n);
    }
  }
  return SW_STATUS_OK;
}

/* Rows of objects {INPUT: value} (instances of a multi-input model, classify examples). */
static sw_status fill_objects(const sw_body *b, const sw_jv *list, const sw_serve_signature *sig, sw_serve_inputs *out,
                              const char *what) {
  size_t rows = sw_jv_size(list);
  if (!rows) return sw_error(SW_STATUS_FORMAT, "no %ss", what);
  out->rows = (int64_t)rows;
  for (size_t k = 0; k < sig->n_in; k++) {
    const sw_serve_io *io = &sig->in[k];
    out->in[k] = alloc_input(io, (int64_t)rows);
    if (!out->in[k]) return sw_error(SW_STATUS_NOMEM, "out of memory");
    size_t esz = sw_dtype_size(io->dtype);
    for (size_t r = 0; r < rows; r++) {
      const sw_jv *obj = sw_jv_at(list, r), *v;
      if (!sw_jv_is_object(obj))
        return sw_error(SW_STATUS_FORMAT, "%s %zu: the model has %zu inputs: give an object {input: value}", what, r, sig->n_in);
      v = sw_jv_get(obj, io->name);
      if (!v && sig->n_in == 1) v = sw_jv_single(obj);
      if (!v) return sw_error(SW_STATUS_FORMAT, "%s %zu: no value for input '%s'", what, r, io->name);
      int64_t n = 0;
      const char *why = "";
      if (!flatten(b, v, io, (uint8_t *)out->in[k] + r * (size_t)io->per * esz, io->per, &n, &why))
        return sw_error(SW_STATUS_FORMAT, "%s %zu: input '%s' %s", what, r, io->name, why);
      if (n != io->per) {
        char where[64];
        snprintf(where, sizeof where, "%s %zu", what, r);
        return count_mismatch(where, io, n);
      }
    }
  }
  return SW_STATUS_OK;
}

sw_status sw_serve_parse_predict(const char *text, size_t len, const sw_serve_signature *sig, sw_serve_inputs *out) {
  memset(out, 0, sizeof *out);
  sw_body b;
  sw_status st = sw_body_parse(text, len, &b);
  if (st) return st;
  const sw_jv *inst = sw_jv_get(b.root, "instances"), *cols = sw_jv_get(b.root, "inputs");
  if (!sw_jv_is_object(b.root) || (!inst == !cols)) {
    st = sw_error(SW_STATUS_FORMAT, "the body needs one of \"instances\" (rows) or \"inputs\" (columns)");
    goto out;
  }
  out->rows = -1;
  if (inst) {
    if (sig->n_in == 1 && !(sw_jv_is_array(inst) && sw_jv_is_object(sw_jv_at(inst, 0))))
      st = fill_batch(&b, inst, &sig->in[0], &out->rows, &out->in[0], "instance");
    else if (!sw_jv_is_array(inst))
      st = sw_error(SW_STATUS_FORMAT, "\"instances\" must be a list");
    else
      st = fill_objects(&b, inst, sig, out, "instance");
  } else {
    out->columnar = true;
    if (sw_jv_is_object(cols)) {
      for (size_t k = 0; k < sig->n_in && !st; k++) {
        const sw_jv *v = sw_jv_get(cols, sig->in[k].name);
        if (!v && sig->n_in == 1) v = sw_jv_single(cols);
        if (!v) st = sw_error(SW_STATUS_FORMAT, "\"inputs\" has no value for input '%s'", sig->in[k].name);
        else st = fill_batch(&b, v, &sig->in[k], &out->rows, &out->in[k], "example");
      }
    } else if (sig->n_in == 1) {
      st = fill_batch(&b, cols, &sig->in[0], &out->rows, &out->in[0], "example");
    } else {
      st = sw_error(SW_STATUS_FORMAT, "the model has %zu inputs: \"inputs\" must be an object {input: value}", sig->n_in);
    }
  }
out:
  sw_body_free(&b);
  if (st) sw_serve_inputs_clear(out, sig->n_in);
  return st;
}

sw_status sw_serve_parse_classify(const char *text, size_t len, const sw_serve_signature *sig, sw_serve_inputs *out) {
  memset(out, 0, sizeof *out);
  sw_body b;
  sw_status st = sw_body_parse(text, len, &b);
  if (st) return st;
  const sw_jv *ex = sw_jv_get(b.root, "examples");
  if (!sw_jv_is_array(ex)) st = sw_error(SW_STATUS_FORMAT, "the body needs \"examples\": [{input: value}, ...]");
  else st = fill_objects(&b, ex, sig, out, "example");
  sw_body_free(&b);
  if (st) sw_serve_inputs_clear(out, sig->n_in);
  return st;
}

/* ---- v2 infer ------------------------------------------------------------------------ */

static bool int_list(const sw_body *b, const sw_jv *v, int64_t *dst, int max, int *n) {
  const sw_numarr *a = sw_body_numarr(b, v);
  if (a) {
    if (a->rank != 1 || !a->all_int || a->n > (size_t)max) return false;
    for (size_t i = 0; i < a->n; i++) dst[i] = (int64_t)a->v[i];
    *n = (int)a->n;
    return true;
  }
  if (!sw_jv_is_array(v) || sw_jv_size(v) > (size_t)max) return false;
  size_t i;
  const sw_jv *e;
  for (i = 0; i < sw_jv_size(v) && (e = sw_jv_at(v, i)); i++) {
    if (!sw_jv_is_integer(e)) return false;
    dst[i] = sw_jv_int(e);
  }
  *n = (int)sw_jv_size(v);
  return true;
}

typedef enum { V2_FP32, V2_FP64, V2_INT64, V2_INT32, V2_UINT8 } v2_kind;

typedef struct {
  const char *name;
  v2_kind kind;
  size_t size;
  bool is_int;
} v2_type;

static const v2_type v2_types[] = {{"FP32", V2_FP32, 4, false},
                                   {"FP64", V2_FP64, 8, false},
                                   {"INT64", V2_INT64, 8, true},
                                   {"INT32", V2_INT32, 4, true},
                                   {"UINT8", V2_UINT8, 1, true}};

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the binary tensor extension is little-endian");

/* Raw little-endian tensor bytes into the input's buffer (this is an x86-64/aarch64
 * little-endian build: FP32 into a float input is one copy). */
static void copy_binary(const sw_serve_io *io, const v2_type *t, const uint8_t *src, int64_t n, void *dst) {
  if (io->dtype == SW_DTYPE_F32 && t->kind == V2_FP32) {
    memcpy(dst, src, (size_t)n * 4);
    return;
  }
  if (io->dtype == SW_DTYPE_I64 && t->kind == V2_INT64) {
    memcpy(dst, src, (size_t)n * 8);
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    double v;
    switch (t->kind) {
      case V2_FP32: {
        float f;
        memcpy(&f, src + i * 4, 4);
        v = f;
        break;
      }
      case V2_FP64: memcpy(&v, src + i * 8, 8); break;
      case V2_INT64: {
        int64_t q;
        memcpy(&q, src + i * 8, 8);
        v = (double)q;
        break;
      }
      case V2_INT32: {
        int32_t q;
        memcpy(&q, src + i * 4, 4);
        v = q;
        break;
      }
      default: v = src[i]; break;
    }
    if (io->dtype == SW_DTYPE_F32) ((float *)dst)[i] = (float)v;
    else ((int64_t *)dst)[i] = (int64_t)v;
  }
}

sw_status sw_serve_parse_infer(const char *text, size_t len, size_t header_len, const sw_serve_signature *sig,
                               sw_serve_inputs *out) {
  memset(out, 0, sizeof *out);
  if (header_len > len) return sw_error(SW_STATUS_FORMAT, "Inference-Header-Content-Length %zu is past the body's %zu bytes", header_len, len);
  size_t json_len = header_len ? header_len : len;
  const uint8_t *bin = (const uint8_t *)text + json_len, *bin_end = (const uint8_t *)text + len;
  sw_body b;
  sw_status st = sw_body_parse(text, json_len, &b);
  if (st) return st;
  const sw_jv *inputs = sw_jv_get(b.root, "inputs");
  if (!sw_jv_is_object(b.root) || !sw_jv_is_array(inputs) || !sw_jv_size(inputs)) {
    st = sw_error(SW_STATUS_FORMAT, "the body needs \"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}, ...]");
    goto out;
  }
  const sw_jv *id = sw_jv_get(b.root, "id");
  if (sw_jv_is_string(id)) {
    out->id = sw_strdup(sw_jv_str(id));
    if (!out->id) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
  }
  out->rows = -1;
  bool seen[SW_SERVE_MAX_IO] = {0};
  size_t i;
  const sw_jv *t;
  for (i = 0; i < sw_jv_size(inputs) && (t = sw_jv_at(inputs, i)); i++) {
    const char *name = sw_jv_str(sw_jv_get(t, "name"));
    const char *dtype = sw_jv_str(sw_jv_get(t, "datatype"));
    if (!name || !dtype) {
      st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: needs \"name\" and \"datatype\"", i);
      goto out;
    }
    size_t k = 0;
    while (k < sig->n_in && strcmp(sig->in[k].name, name)) k++;
    if (k == sig->n_in) {
      st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: the model has no input '%.64s'", i, name);
      goto out;
    }
    if (seen[k]) {
      st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: input '%s' given twice", i, name);
      goto out;
    }
    seen[k] = true;
    const sw_serve_io *io = &sig->in[k];
    const v2_type *vt = NULL;
    for (size_t q = 0; q < sizeof v2_types / sizeof v2_types[0]; q++)
      if (!strcmp(v2_types[q].name, dtype)) vt = &v2_types[q];
    if (!vt || (io->dtype != SW_DTYPE_F32 && !vt->is_int)) {
      st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: datatype '%.16s' does not fit input '%s' (%s)", i, dtype, name,
                    io->dtype == SW_DTYPE_F32 ? "FP32" : "INT64");
      goto out;
    }
    int64_t shape[SW_NN_MAX_RANK + 1];
    int rank = 0;
    if (!int_list(&b, sw_jv_get(t, "shape"), shape, SW_NN_MAX_RANK + 1, &rank) || rank < 1) {
      st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: \"shape\" must be a list of at least one integer (batch first)", i);
      goto out;
    }
    int64_t total = 1;
    for (int d = 0; d < rank; d++) {
      if (shape[d] < 0 || (shape[d] && total > INT64_MAX / 4 / shape[d])) {
        st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: bad shape", i);
        goto out;
      }
      total *= shape[d];
    }
    int64_t rows = shape[0];
    if (rows == 0 || total != rows * io->per) {
      st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: shape gives %lld values per example, input '%s' needs %lld", i,
                    (long long)(rows ? total / rows : 0), name, (long long)io->per);
      goto out;
    }
    if (out->rows >= 0 && out->rows != rows) {
      st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: %lld examples, another input has %lld", i, (long long)rows, (long long)out->rows);
      goto out;
    }
    out->rows = rows;
    out->in[k] = alloc_input(io, rows);
    if (!out->in[k]) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
    const sw_jv *bsize = sw_jv_get(sw_jv_get(t, "parameters"), "binary_data_size");
    if (bsize) {
      if (!header_len || !sw_jv_is_integer(bsize) || sw_jv_int(bsize) != total * (int64_t)vt->size) {
        st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: binary_data_size must be %lld bytes (%s x %lld) in a body with Inference-Header-Content-Length",
                      i, (long long)(total * (int64_t)vt->size), vt->name, (long long)total);
        goto out;
      }
      size_t nbytes = (size_t)sw_jv_int(bsize);
      if ((size_t)(bin_end - bin) < nbytes) {
        st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: the binary data is cut short", i);
        goto out;
      }
      copy_binary(io, vt, bin, total, out->in[k]);
      bin += nbytes;
      continue;
    }
    const sw_jv *data = sw_jv_get(t, "data");
    if (!data) {
      st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: needs \"data\" or parameters.binary_data_size", i);
      goto out;
    }
    sw_serve_io flat = *io;
    flat.per = total;
    int64_t n = 0;
    const char *why = "";
    if (!flatten(&b, data, &flat, out->in[k], total, &n, &why)) {
      st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: \"data\" %s", i, why);
      goto out;
    }
    if (n != total) {
      st = sw_error(SW_STATUS_FORMAT, "inputs[%zu]: \"data\" has %s%lld values, the shape says %lld", i, n > total ? "more than " : "",
                    (long long)(n > total ? total : n), (long long)total);
      goto out;
    }
  }
  for (size_t k = 0; k < sig->n_in; k++)
    if (!seen[k]) {
      st = sw_error(SW_STATUS_FORMAT, "no tensor for input '%s'", sig->in[k].name);
      goto out;
    }
  if (bin != bin_end) {
    st = sw_error(SW_STATUS_FORMAT, "%zu bytes of binary data beyond the declared tensors", (size_t)(bin_end - bin));
    goto out;
  }
  const sw_jv *outs = sw_jv_get(b.root, "outputs");
  bool all_binary = sw_jv_is_true(sw_jv_get(sw_jv_get(b.root, "parameters"), "binary_data_output"));
  if (outs && !sw_jv_is_array(outs)) {
    st = sw_error(SW_STATUS_FORMAT, "\"outputs\" must be a list");
    goto out;
  }
  if (!sw_jv_size(outs)) {
    for (size_t k = 0; k < sig->n_out; k++) {
      out->want_out[k] = true;
      out->binary_out[k] = all_binary;
    }
  } else {
    for (i = 0; i < sw_jv_size(outs) && (t = sw_jv_at(outs, i)); i++) {
      const char *name = sw_jv_str(sw_jv_get(t, "name"));
      size_t k = 0;
      while (name && k < sig->n_out && strcmp(sig->out[k].name, name)) k++;
      if (!name || k == sig->n_out) {
        st = sw_error(SW_STATUS_FORMAT, "outputs[%zu]: the model has no output '%.64s'", i, name ? name : "");
        goto out;
      }
      out->want_out[k] = true;
      const sw_jv *bd = sw_jv_get(sw_jv_get(t, "parameters"), "binary_data");
      out->binary_out[k] = bd ? sw_jv_is_true(bd) : all_binary;
    }
  }
out:
  sw_body_free(&b);
  if (st) sw_serve_inputs_clear(out, sig->n_in);
  return st;
}

/* ---- feedback ------------------------------------------------------------------------ */

void sw_feedback_items_free(sw_feedback_item *items, size_t n) {
  if (!items) return;
  for (size_t i = 0; i < n; i++) {
    sw_free(items[i].id);
    sw_free(items[i].name);
  }
  sw_free(items);
}

#define MAX_FEEDBACK 100000

static sw_status one_label(const sw_jv *l, sw_feedback_item *it, size_t i) {
  if (sw_jv_is_number(l)) {
    it->value = sw_jv_num(l);
    return SW_STATUS_OK;
  }
  if (sw_jv_is_string(l)) {
    it->is_name = true;
    it->name = sw_strdup(sw_jv_str(l));
    return it->name ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  return sw_error(SW_STATUS_FORMAT, "feedback[%zu]: \"label\" must be a class index, a class name or a number", i);
}

sw_status sw_serve_parse_feedback(const char *text, size_t len, sw_feedback_item **out, size_t *n_out) {
  *out = NULL;
  *n_out = 0;
  sw_body b;
  sw_status st = sw_body_parse(text, len, &b);
  if (st) return st;
  sw_feedback_item *items = NULL;
  size_t n = 0, cap = 0;
  const sw_jv *fb = sw_jv_get(b.root, "feedback");
  if (!sw_jv_is_array(fb)) {
    st = sw_error(SW_STATUS_FORMAT, "the body needs \"feedback\": [{\"id\": REQUEST_ID, \"label\": L}, ...]");
    goto out;
  }
  size_t i;
  const sw_jv *e;
  for (i = 0; i < sw_jv_size(fb) && (e = sw_jv_at(fb, i)); i++) {
    const char *id = sw_jv_str(sw_jv_get(e, "id"));
    const sw_jv *label = sw_jv_get(e, "label");
    if (!id || !label) {
      st = sw_error(SW_STATUS_FORMAT, "feedback[%zu]: needs \"id\" (a request id) and \"label\"", i);
      goto out;
    }
    const sw_numarr *a = sw_body_numarr(&b, label);
    size_t rows = a && a->rank == 1 ? a->n : sw_jv_is_array(label) ? sw_jv_size(label) : 1;
    bool list = (a && a->rank == 1) || sw_jv_is_array(label);
    if ((a && a->rank > 1) || rows == 0) {
      st = sw_error(SW_STATUS_FORMAT, "feedback[%zu]: \"label\" must be a label or a list of labels, one per example", i);
      goto out;
    }
    for (size_t r = 0; r < rows; r++) {
      if (n == MAX_FEEDBACK) {
        st = sw_error(SW_STATUS_FORMAT, "more than %d labels in one body", MAX_FEEDBACK);
        goto out;
      }
      if (n == cap) {
        cap = cap ? cap * 2 : 16;
        sw_feedback_item *m = sw_realloc(items, cap * sizeof *m);
        if (!m) {
          st = sw_error(SW_STATUS_NOMEM, "out of memory");
          goto out;
        }
        items = m;
      }
      sw_feedback_item *it = &items[n++];
      memset(it, 0, sizeof *it);
      it->row = (int64_t)r;
      it->id = sw_strdup(id);
      if (!it->id) {
        st = sw_error(SW_STATUS_NOMEM, "out of memory");
        goto out;
      }
      if (a && a->rank == 1) it->value = a->v[r];
      else st = one_label(list ? sw_jv_at(label, r) : label, it, i);
      if (st) goto out;
    }
  }
  *out = items;
  *n_out = n;
  items = NULL;
out:
  sw_feedback_items_free(items, n);
  sw_body_free(&b);
  return st;
}
