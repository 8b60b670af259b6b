/* YAML through libyaml, loaded into jansson's tree so configs and JSON share one type.
 * Plain scalars are typed by the YAML 1.2 core schema; quoted ones stay strings. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "slipway/base.h"

static json_t *scalar_value(const yaml_event_t *ev) {
  const char *s = (const char *)ev->data.scalar.value;
  size_t n = ev->data.scalar.length;
  if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return json_stringn(s, n);
  if (n == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))
    return json_null();
  if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return json_true();
  if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return json_false();
  char *end;
  errno = 0;
  /* YAML 1.2 core schema: decimal [-+]?[0-9]+, hexadecimal 0x..., octal 0o... */
  bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X'), oct = s[0] == '0' && s[1] == 'o';
  long long i = hex ? strtoll(s + 2, &end, 16) : oct ? strtoll(s + 2, &end, 8) : strtoll(s, &end, 10);
  if (*end == '\0' && errno == 0 && (hex || oct || s[0] == '-' || s[0] == '+' || (s[0] >= '0' && s[0] <= '9')) &&
      end != s + (hex || oct ? 2 : 0))
    return json_integer(i);
  errno = 0;
  double d = strtod(s, &end);
  if (*end == '\0' && errno == 0 && strpbrk(s, "0123456789") && !strpbrk(s, "xXpP") &&
      !strpbrk(s, "iInN"))
    return json_real(d);
  return json_stringn(s, n);
}

/* Parses one node starting with the event already in *ev. Returns NULL with the error
 * set and its status in *st. */
static json_t *parse_node(yaml_parser_t *p, yaml_event_t *ev, const char *name, int depth, sw_status *st);

static sw_status next_event(yaml_parser_t *p, yaml_event_t *ev, const char *name) {
  if (!yaml_parser_parse(p, ev))
    return sw_error(SW_STATUS_FORMAT, "%s:%zu:%zu: %s", name, p->problem_mark.line + 1,
                    p->problem_mark.column + 1, p->problem ? p->problem : "YAML syntax error");
  return SW_STATUS_OK;
}

static json_t *parse_node(yaml_parser_t *p, yaml_event_t *ev, const char *name, int depth, sw_status *st) {
  if (depth > 64) {
    *st = sw_error(SW_STATUS_FORMAT, "%s: YAML nested too deeply", name);
    return NULL;
  }
  switch (ev->type) {
    case YAML_SCALAR_EVENT: {
      const char *s = (const char *)ev->data.scalar.value;
      if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
          (!strcmp(s, ".inf") || !strcmp(s, "+.inf") || !strcmp(s, "-.inf") || !strcmp(s, ".nan") ||
           !strcmp(s, ".Inf") || !strcmp(s, "-.Inf") || !strcmp(s, ".NaN"))) {
        *st = sw_error(SW_STATUS_UNSUPPORTED, "%s:%zu: '%s': infinities and NaN cannot be represented here",
                       name, ev->start_mark.line + 1, s);
        return NULL;
      }
      json_t *v = scalar_value(ev);
      if (!v) *st = sw_error(SW_STATUS_NOMEM, "out of memory");
      return v;
    }
    case YAML_ALIAS_EVENT:
      *st = sw_error(SW_STATUS_UNSUPPORTED, "%s:%zu: YAML aliases are not supported", name,
                     ev->start_mark.line + 1);
      return NULL;
    case YAML_SEQUENCE_START_EVENT: {
      json_t *arr = json_array();
      for (;;) {
        yaml_event_t e;
        *st = next_event(p, &e, name);
        if (*st) goto seq_fail;
        if (e.type == YAML_SEQUENCE_END_EVENT) {
          yaml_event_delete(&e);
          return arr;
        }
        json_t *item = parse_node(p, &e, name, depth + 1, st);
        yaml_event_delete(&e);
        if (!item) goto seq_fail;
        json_array_append_new(arr, item);
      }
    seq_fail:
      json_decref(arr);
      return NULL;
    }
    case YAML_MAPPING_START_EVENT: {
      json_t *obj = json_object();
      for (;;) {
        yaml_event_t k;
        *st = next_event(p, &k, name);
        if (*st) goto map_fail;
        if (k.type == YAML_MAPPING_END_EVENT) {
          yaml_event_delete(&k);
          return obj;
        }
        if (k.type != YAML_SCALAR_EVENT) {
          *st = sw_error(SW_STATUS_FORMAT, "%s:%zu: mapping keys must be plain scalars", name,
                         k.start_mark.line + 1);
          yaml_event_delete(&k);
          goto map_fail;
        }
        char *key = sw_strndup((const char *)k.data.scalar.value, k.data.scalar.length);
        size_t line = k.start_mark.line + 1;
        yaml_event_delete(&k);
        if (!key) {
          *st = sw_error(SW_STATUS_NOMEM, "out of memory");
          goto map_fail;
        }
        if (json_object_get(obj, key)) {
          *st = sw_error(SW_STATUS_FORMAT, "%s:%zu: duplicate key '%s'", name, line, key);
          sw_free(key);
          goto map_fail;
        }
        yaml_event_t v;
        *st = next_event(p, &v, name);
        if (*st) {
          sw_free(key);
          goto map_fail;
        }
        json_t *val = parse_node(p, &v, name, depth + 1, st);
        yaml_event_delete(&v);
        if (!val) {
          sw_free(key);
          goto map_fail;
        }
        json_object_set_new(obj, key, val);
        sw_free(key);
      }
    map_fail:
      json_decref(obj);
      return NULL;
    }
    default:
      *st = sw_error(SW_STATUS_FORMAT, "%s: unexpected YAML event", name);
      return NULL;
  }
}

sw_status sw_yaml_parse(const char *text, size_t len, const char *name, json_t **out) {
  *out = NULL;
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) return sw_error(SW_STATUS_NOMEM, "cannot start the YAML parser");
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  sw_status st = SW_STATUS_OK;
  json_t *root = NULL;
  yaml_event_t ev;
  /* stream start, documents, stream end; an empty stream is null, a second document an
   * error (a config is one document) */
  int documents = 0;
  for (;;) {
    st = next_event(&p, &ev, name);
    if (st) goto out;
    yaml_event_type_t t = ev.type;
    if (t == YAML_STREAM_END_EVENT) {
      yaml_event_delete(&ev);
      break;
    }
    if (t == YAML_DOCUMENT_START_EVENT && ++documents > 1) {
      st = sw_error(SW_STATUS_FORMAT, "%s:%zu: more than one YAML document", name, ev.start_mark.line + 1);
      yaml_event_delete(&ev);
      goto out;
    }
    if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_START_EVENT || t == YAML_DOCUMENT_END_EVENT) {
      yaml_event_delete(&ev);
      continue;
    }
    root = parse_node(&p, &ev, name, 0, &st);
    yaml_event_delete(&ev);
    if (!root) goto out;
  }
  *out = root ? root : json_null();
  root = NULL;
out:
  json_decref(root);
  yaml_parser_delete(&p);
  return st;
}

sw_status sw_yaml_load_file(const char *path, json_t **out) {
  uint8_t *data;
  size_t len;
  sw_status st = sw_read_file(path, &data, &len);
  if (st) return st;
  st = sw_yaml_parse((const char *)data, len, path, out);
  sw_free(data);
  return st;
}
