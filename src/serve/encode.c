/* Answers in JSON: floats printed so they read back as the same float, tensors as nested
 * lists in their per-example shape, and TensorFlow Serving's :predict answer (rows or
 * columns), shared by the server and `slipway predict`. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"

sw_status sw_serve_signature_of(sw_graph *g, const sw_node *in, const char *const *in_names, size_t n_in,
                                const sw_node *out, size_t n_out, sw_serve_signature *sig) {
  memset(sig, 0, sizeof *sig);
  if (n_in > SW_SERVE_MAX_IO || n_out > SW_SERVE_MAX_IO)
    return sw_error(SW_STATUS_UNSUPPORTED, "%zu inputs and %zu outputs (at most %d each)", n_in, n_out, SW_SERVE_MAX_IO);
  sig->n_in = n_in;
  sig->n_out = n_out;
  for (size_t k = 0; k < n_in; k++) {
    sw_serve_io *io = &sig->in[k];
    sw_node n = in[k];
    io->name = in_names ? in_names[k] : sw_graph_name(g, n);
    io->dtype = sw_graph_dtype(g, n);
    if (io->dtype == SW_DTYPE_U8) return sw_error(SW_STATUS_UNSUPPORTED, "input '%s': uint8 inputs are not served", io->name);
    io->rank = sw_graph_rank(g, n) - 1;
    io->per = 1;
    for (int d = 0; d < io->rank; d++) {
      io->shape[d] = sw_graph_shape(g, n)[d + 1];
      if (io->shape[d] <= 0) return sw_error(SW_STATUS_UNSUPPORTED, "input '%s': only the batch dimension may be symbolic", io->name);
      io->per *= io->shape[d];
    }
  }
  for (size_t k = 0; k < n_out; k++) {
    sw_serve_io *io = &sig->out[k];
    sw_node n = out[k];
    io->name = sw_graph_name(g, n);
    io->dtype = sw_graph_dtype(g, n);
    int rank = sw_graph_rank(g, n);
    if (rank < 1 || sw_graph_shape(g, n)[0] != 1)
      return sw_error(SW_STATUS_UNSUPPORTED, "output '%s' has no batch dimension", io->name);
    io->rank = rank - 1;
    io->per = 1;
    for (int d = 0; d < io->rank; d++) {
      io->shape[d] = sw_graph_shape(g, n)[d + 1];
      io->per *= io->shape[d];
    }
  }
  return SW_STATUS_OK;
}

/* A finite float as JSON that reads back as the same float: nine significant digits
 * from one scaling by an exact power of ten, checked by reading it back (printf's %.9g,
 * several times slower, where the check fails or the magnitude is unusual). */
size_t sw_serve_format_float(float f, char out[32]) {
  static const double p10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16};
  double x = f, ax = fabs(x);
  if (ax == 0) {
    if (signbit(f)) {
      memcpy(out, "-0.0", 5);
      return 4;
    }
    memcpy(out, "0.0", 4);
    return 3;
  }
  if (ax >= 1e-7 && ax < 1e9) {
    int e10 = (int)floor(log10(ax)); /* 10^e10 <= ax < 10^(e10+1), give or take one */
    int frac = 8 - e10;              /* digits after the point for nine significant */
    if (frac >= 0 && frac <= 16) {
      double scaled = nearbyint(ax * p10[frac]);
      uint64_t digits = (uint64_t)scaled;
      char buf[32];
      int len = 0;
      do {
        buf[len++] = (char)('0' + digits % 10);
        digits /= 10;
      } while (digits);
      while (len <= frac) buf[len++] = '0'; /* at least one digit before the point */
      char *o = out;
      if (x < 0) *o++ = '-';
      for (int i = len - 1; i >= frac; i--) *o++ = buf[i];
      int last = 0; /* trailing zeros of the fraction go */
      while (last < frac && buf[last] == '0') last++;
      if (last < frac) {
        *o++ = '.';
        for (int i = frac - 1; i >= last; i--) *o++ = buf[i];
      }
      *o = '\0';
      if (strtof(out, NULL) == f) return (size_t)(o - out);
    }
  }
  return (size_t)snprintf(out, 32, "%.9g", (double)f);
}

size_t sw__fmt_int(char out[24], int64_t v) {
  char text[24], *p = text + sizeof text;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do *--p = (char)('0' + u % 10);
  while (u /= 10);
  if (v < 0) *--p = '-';
  size_t n = (size_t)(text + sizeof text - p);
  memcpy(out, p, n);
  out[n] = '\0';
  return n;
}

void sw__put_int(sw_buf *b, int64_t v) {
  char text[24];
  sw_buf_append(b, text, sw__fmt_int(text, v));
}

void sw__put_number(sw_buf *b, sw_dtype dt, const void *data, int64_t i) {
  if (dt == SW_DTYPE_I64) {
    sw__put_int(b, ((const int64_t *)data)[i]);
    return;
  }
  float f = ((const float *)data)[i];
  if (!isfinite(f)) {
    sw_buf_append(b, "null", 4); /* JSON has no NaN or infinity */
    return;
  }
  char text[32];
  size_t n = sw_serve_format_float(f, text);
  sw_buf_append(b, text, n);
}

/* Example row of an output as a nested list in its per-example shape. */
void sw__put_nested(sw_buf *b, const sw_serve_io *io, const void *data, int dim, int64_t *pos) {
  if (dim == io->rank) {
    sw__put_number(b, io->dtype, data, (*pos)++);
    return;
  }
  sw_buf_append(b, "[", 1);
  for (int64_t i = 0; i < io->shape[dim]; i++) {
    if (i) sw_buf_append(b, ",", 1);
    sw__put_nested(b, io, data, dim + 1, pos);
  }
  sw_buf_append(b, "]", 1);
}

/* As jansson writes a string: '"' and '\\' escaped, control characters as \uXXXX (or
 * their short escapes), UTF-8 as it is; text that is not valid UTF-8 gives "" as
 * jansson gives none. */
void sw__put_string(sw_buf *b, const char *s) {
  size_t before = b->len;
  sw_buf_append(b, "\"", 1);
  const unsigned char *p = (const unsigned char *)s, *run = p, *end = p + strlen(s);
  for (;; p++) {
    unsigned c = *p;
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) continue;
    sw_buf_append(b, run, (size_t)(p - run));
    if (!c) break;
    if (c >= 0x80) {
      size_t n = sw_utf8_len(p, end);
      if (!n) {
        b->len = before;
        sw_buf_append(b, "\"\"", 2);
        return;
      }
      sw_buf_append(b, p, n);
      p += n - 1;
    } else {
      static const char shorts[] = {['"'] = '"', ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
      char esc[8] = {'\\', shorts[c], 0};
      if (!shorts[c]) snprintf(esc, sizeof esc, "\\u%04X", c);
      sw_buf_append(b, esc, strlen(esc));
    }
    run = p + 1;
  }
  sw_buf_append(b, "\"", 1);
}

sw_status sw_serve_encode_predict(const sw_serve_signature *sig, int64_t rows, bool columnar, void *const *outputs,
                                  sw_buf *b) {
  size_t before = b->len;
  if (!columnar) {
    sw_buf_append(b, "{\"predictions\":[", 16);
    for (int64_t r = 0; r < rows; r++) {
      if (r) sw_buf_append(b, ",", 1);
      if (sig->n_out > 1) sw_buf_append(b, "{", 1);
      for (size_t k = 0; k < sig->n_out; k++) {
        if (sig->n_out > 1) {
          if (k) sw_buf_append(b, ",", 1);
          sw__put_string(b, sig->out[k].name);
          sw_buf_append(b, ":", 1);
        }
        int64_t pos = r * sig->out[k].per;
        sw__put_nested(b, &sig->out[k], outputs[k], 0, &pos);
      }
      if (sig->n_out > 1) sw_buf_append(b, "}", 1);
    }
    sw_buf_append(b, "]}", 2);
    return b->data && b->len > before ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  sw_buf_append(b, "{\"outputs\":", 11);
  if (sig->n_out > 1) sw_buf_append(b, "{", 1);
  for (size_t k = 0; k < sig->n_out; k++) {
    if (sig->n_out > 1) {
      if (k) sw_buf_append(b, ",", 1);
      sw__put_string(b, sig->out[k].name);
      sw_buf_append(b, ":", 1);
    }
    sw_buf_append(b, "[", 1);
    for (int64_t r = 0; r < rows; r++) {
      if (r) sw_buf_append(b, ",", 1);
      int64_t pos = r * sig->out[k].per;
      sw__put_nested(b, &sig->out[k], outputs[k], 0, &pos);
    }
    sw_buf_append(b, "]", 1);
  }
  if (sig->n_out > 1) sw_buf_append(b, "}", 1);
  sw_buf_append(b, "}", 1);
  return b->data && b->len > before ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
}

