/* CSV after RFC 4180: fields separated by a delimiter, records by LF or CRLF, quoted
 * fields holding delimiters, line breaks and doubled quotes. Strict where the RFC is
 * (no bare quote inside an unquoted field, nothing after a closing quote), and after a
 * malformed record it resynchronizes at the next line so one bad row costs one row. */
#include <string.h>

#include "data/data_int.h"

struct sw_csv_reader {
  const char *data;
  size_t len;
  size_t pos;
  uint64_t line; /* 1-based line number at pos */
  char delim;
  size_t expected_fields; /* 0: any */
  sw_buf text;        /* unquoted field contents, each NUL-terminated */
  size_t *starts;     /* offset of each field in text */
  size_t *lens;
  char **fields;
  size_t cap_fields;
};

sw_status sw_csv_open_mem(const char *data, size_t len, char delim, sw_csv_reader **out) {
  *out = NULL;
  if (delim == '"' || delim == '\n' || delim == '\r')
    return sw_error(SW_STATUS_INVALID, "a CSV delimiter cannot be a quote or a line break");
  sw_csv_reader *r = sw_calloc(1, sizeof *r);
  if (!r) return sw_error(SW_STATUS_NOMEM, "out of memory");
  r->data = data;
  r->len = len;
  r->line = 1;
  r->delim = delim;
  /* a UTF-8 byte order mark is not part of the first field */
  if (len >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3)) r->pos = 3;
  *out = r;
  return SW_STATUS_OK;
}

void sw_csv_expect_fields(sw_csv_reader *r, size_t n) { r->expected_fields = n; }

void sw_csv_close(sw_csv_reader *r) {
  if (!r) return;
  sw_buf_free(&r->text);
  sw_free(r->starts);
  sw_free(r->lens);
  sw_free(r->fields);
  sw_free(r);
}

static sw_status push_field(sw_csv_reader *r, size_t *n, size_t start) {
  if (*n == r->cap_fields) {
    size_t cap = r->cap_fields ? r->cap_fields * 2 : 16;
    size_t *s = sw_realloc(r->starts, cap * sizeof *s);
    if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory");
    r->starts = s;
    size_t *l = sw_realloc(r->lens, cap * sizeof *l);
    if (!l) return sw_error(SW_STATUS_NOMEM, "out of memory");
    r->lens = l;
    char **f = sw_realloc(r->fields, cap * sizeof *f);
    if (!f) return sw_error(SW_STATUS_NOMEM, "out of memory");
    r->fields = f;
    r->cap_fields = cap;
  }
  r->starts[*n] = start;
  r->lens[*n] = r->text.len - start;
  (*n)++;
  return sw_buf_append(&r->text, "", 1); /* the NUL after the field */
}

/* Index just past the line ending at or after i (or len). */
static size_t end_of_line(const sw_csv_reader *r, size_t i) {
  const char *nl = memchr(r->data + i, '\n', r->len - i);
  return nl ? (size_t)(nl - r->data) + 1 : r->len;
}

static uint64_t count_lines(const char *p, size_t n) {
  uint64_t c = 0;
  for (size_t i = 0; i < n; i++) c += p[i] == '\n';
  return c;
}

/* Sets raw to [start, end) less its line ending. */
static void set_raw(const sw_csv_reader *r, sw_csv_record *rec, size_t start, size_t end) {
  size_t e = end;
  if (e > start && r->data[e - 1] == '\n') e--;
  if (e > start && r->data[e - 1] == '\r') e--;
  rec->raw = r->data + start;
  rec->raw_len = e - start;
}

sw_status sw_csv_next(sw_csv_reader *r, sw_csv_record *rec) {
  memset(rec, 0, sizeof *rec);
  /* blank lines are not records */
  while (r->pos < r->len) {
    if (r->data[r->pos] == '\n') {
      r->pos++;
      r->line++;
    } else if (r->data[r->pos] == '\r' && r->pos + 1 < r->len && r->data[r->pos + 1] == '\n') {
      r->pos += 2;
      r->line++;
    } else {
      break;
    }
  }
  if (r->pos >= r->len) return SW_STATUS_EOF;

  const size_t start = r->pos;
  const uint64_t start_line = r->line;
  rec->line = start_line;
  rec->offset = start;
  r->text.len = 0;
  size_t n = 0, i = start, resync = 0;
  bool multiline = false; /* a quoted field of this record held a line break */
  const char *err = NULL;
  sw_status st;

  for (;;) { /* one field per iteration */
    size_t fstart = r->text.len;
    if (i < r->len && r->data[i] == '"') {
      i++;
      for (;;) {
        if (i >= r->len) {
          err = "unterminated quoted field";
          resync = end_of_line(r, start);
          goto bad;
        }
        const char *q = memchr(r->data + i, '"', r->len - i);
        size_t stop = q ? (size_t)(q - r->data) : r->len;
        st = sw_buf_append(&r->text, r->data + i, stop - i);
        if (st) return st;
        if (memchr(r->data + i, '\n', stop - i)) multiline = true;
        i = stop;
        if (!q) continue; /* reaches the unterminated case */
        if (i + 1 < r->len && r->data[i + 1] == '"') {
          st = sw_buf_append(&r->text, "\"", 1);
          if (st) return st;
          i += 2;
          continue;
        }
        i++; /* the closing quote */
        break;
      }
      if (i < r->len && r->data[i] != r->delim && r->data[i] != '\n' &&
          !(r->data[i] == '\r' && i + 1 < r->len && r->data[i + 1] == '\n') &&
          !(r->data[i] == '\r' && i + 1 == r->len)) {
        err = "text after a closing quote";
        resync = end_of_line(r, i);
        goto bad_multiline;
      }
    } else {
      size_t j = i;
      while (j < r->len && r->data[j] != r->delim && r->data[j] != '\n') {
        if (r->data[j] == '"') {
          err = "quote inside an unquoted field";
          resync = end_of_line(r, j);
          goto bad;
        }
        j++;
      }
      size_t e = j;
      if (j < r->len && r->data[j] == '\n' && e > i && r->data[e - 1] == '\r') e--;
      if (j == r->len && e > i && r->data[e - 1] == '\r') e--;
      st = sw_buf_append(&r->text, r->data + i, e - i);
      if (st) return st;
      i = j;
    }
    st = push_field(r, &n, fstart);
    if (st) return st;
    if (i < r->len && r->data[i] == r->delim) {
      i++;
      continue;
    }
    /* end of record: LF, CRLF or end of input */
    if (i < r->len && r->data[i] == '\r') i++;
    if (i < r->len && r->data[i] == '\n') i++;
    break;
  }
  if (multiline && r->expected_fields && n != r->expected_fields) {
    err = "unterminated quoted field";
    goto bad_multiline;
  }
  set_raw(r, rec, start, i);
  r->line += count_lines(r->data + start, i - start);
  r->pos = i;
  for (size_t k = 0; k < n; k++) r->fields[k] = (char *)r->text.data + r->starts[k];
  rec->n_fields = n;
  rec->fields = r->fields;
  rec->field_lens = r->lens;
  return SW_STATUS_OK;

bad_multiline:
  /* A quote that opened a field on this line and "closed" lines later, only for the
   * record to go wrong, was most likely never closed: give up the first line alone, so
   * the lines after it are read as the records they are. */
  if (multiline) {
    err = "unterminated quoted field";
    resync = end_of_line(r, start);
  }
bad:
  set_raw(r, rec, start, resync);
  r->line += count_lines(r->data + start, resync - start);
  r->pos = resync;
  return sw_error(SW_STATUS_FORMAT, "line %llu: %s", (unsigned long long)start_line, err);
}
