/* A minimal HTTP listener that answers GET /metrics with a caller's Prometheus text:
 * the standalone `slipway monitor --listen` exports its numbers through it, as the
 * server does on its own port. Everything else is 404. */
#include <microhttpd.h>
#include <string.h>
#include <sys/socket.h>

#include "serve/serve_int.h"

struct sw_metrics_listener {
  struct MHD_Daemon *d;
  uint16_t port;
  sw_metrics_render_fn fn;
  void *ctx;
};

static void free_text(void *p) { sw_free(p); }

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)version;
  (void)upload;
  sw_metrics_listener *l = cls;
  if (!*con_cls) { /* headers only: wait for the end of the request */
    *con_cls = l;
    return MHD_YES;
  }
  if (*upload_size) {
    *upload_size = 0;
    return MHD_YES;
  }
  sw_buf b = {0};
  unsigned code = MHD_HTTP_OK;
  const char *type = "text/plain; version=0.0.4";
  if (strcmp(method, "GET") || strcmp(url, "/metrics")) {
    code = MHD_HTTP_NOT_FOUND;
    type = "text/plain";
    sw_buf_printf(&b, "only GET /metrics here\n");
  } else if (l->fn(l->ctx, &b) || !b.data) {
    sw_buf_free(&b);
    code = MHD_HTTP_SERVICE_UNAVAILABLE;
    type = "text/plain";
    sw_buf_printf(&b, "cannot render the metrics\n");
  }
  struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(b.len, b.data ? (void *)b.data : (void *)"",
                                                                              b.data ? free_text : NULL);
  if (!r) {
    sw_buf_free(&b);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  enum MHD_Result res = MHD_queue_response(conn, code, r);
  MHD_destroy_response(r);
  return res;
}

sw_status sw_metrics_listener_start(const char *listen, sw_metrics_render_fn fn, void *ctx, sw_metrics_listener **out) {
  *out = NULL;
  struct sockaddr_storage ss;
  unsigned sl = 0;
  sw_status st = sw__resolve_listen(listen, &ss, &sl);
  if (st) return st;
  sw_metrics_listener *l = sw_calloc(1, sizeof *l);
  if (!l) return sw_error(SW_STATUS_NOMEM, "out of memory");
  l->fn = fn;
  l->ctx = ctx;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
  if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  l->d = MHD_start_daemon(flags, 0, NULL, NULL, answer, l, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                          MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
  if (!l->d) {
    sw_free(l);
    return sw_error(SW_STATUS_IO, "cannot listen on %s (in use, or not an address of this host)", listen);
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_BIND_PORT);
  l->port = info ? info->port : 0;
  *out = l;
  return SW_STATUS_OK;
}

uint16_t sw_metrics_listener_port(const sw_metrics_listener *l) { return l->port; }

void sw_metrics_listener_free(sw_metrics_listener *l) {
  if (!l) return;
  MHD_stop_daemon(l->d);
  sw_free(l);
}
