/* The dashboard's pages: the files under ui/ are compiled into the binary (a CMake step
 * turns them into ui_assets.c), served at /ui/ with their content type and an ETag (the
 * first 32 hex digits of their SHA-256), revalidated on every load (no-cache), so a new
 * binary's pages are never mixed with an old one's from the browser's cache. Only the
 * compiled-in names are answered: no path from a request reaches the filesystem. */
#include <pthread.h>
#include <string.h>

#include "serve/serve_int.h"

static char etags[64][40];
static pthread_once_t etags_once = PTHREAD_ONCE_INIT;

static void compute_etags(void) {
  for (size_t i = 0; i < sw__ui_n_assets && i < 64; i++) {
    char hex[SW_SHA256_HEX_LEN];
    if (sw_sha256_hex(sw__ui_assets[i].data, sw__ui_assets[i].len, hex)) hex[0] = '\0';
    snprintf(etags[i], sizeof etags[i], "\"%.32s\"", hex);
  }
}

static const char *content_type(const char *name) {
  const char *dot = strrchr(name, '.');
  if (!dot) return "application/octet-stream";
  if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
  if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
  if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
  if (!strcmp(dot, ".svg")) return "image/svg+xml";
  if (!strcmp(dot, ".png")) return "image/png";
  if (!strcmp(dot, ".ico")) return "image/x-icon";
  if (!strcmp(dot, ".json")) return "application/json";
  return "application/octet-stream";
}

static void answer_text(sw__reply *out, int status, const char *text) {
  out->status = status;
  out->content_type = "text/plain; charset=utf-8";
  sw_buf_append(&out->body, text, strlen(text));
}

/* True when header (an If-None-Match list, or "*") names etag. */
static bool etag_matches(const char *header, const char *etag) {
  if (!header) return false;
  if (!strcmp(header, "*")) return true;
  return strstr(header, etag) != NULL;
}

void sw__ui_answer(const char *path, const char *if_none_match, sw__reply *out) {
  memset(out, 0, sizeof *out);
  /* "/" and "/ui" lead to "/ui/" by a relative Location, which stays right behind a
   * proxy that serves us under a path prefix */
  if (!strcmp(path, "/") || !strcmp(path, "")) {
    out->location = "ui/";
    answer_text(out, 302, "the dashboard is at ui/\n");
    return;
  }
  if (!strcmp(path, "/ui")) {
    out->location = "ui/";
    answer_text(out, 301, "the dashboard is at ui/\n");
    return;
  }
  const char *name = path + 4; /* after "/ui/" */
  if (strncmp(path, "/ui/", 4)) {
    answer_text(out, 404, "no such page\n");
    return;
  }
  if (!*name) name = "index.html";
  pthread_once(&etags_once, compute_etags);
  for (size_t i = 0; i < sw__ui_n_assets && i < 64; i++) {
    if (strcmp(sw__ui_assets[i].name, name)) continue;
    snprintf(out->etag, sizeof out->etag, "%s", etags[i]);
    out->cache_control = "no-cache";
    out->content_type = content_type(name);
    if (etag_matches(if_none_match, etags[i])) {
      out->status = 304;
      return;
    }
    out->status = 200;
    if (sw_buf_append(&out->body, sw__ui_assets[i].data, sw__ui_assets[i].len)) {
      sw_buf_free(&out->body);
      out->etag[0] = '\0';
      answer_text(out, 503, "out of memory\n");
    }
    return;
  }
  answer_text(out, 404, "no such page\n");
}
