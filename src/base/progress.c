/* A progress bar on stderr for long work, drawn only on a terminal and at most
 * ten times a second, so logs and pipes never see it. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "slipway/base.h"

struct sw_progress {
  char label[48];
  char note[96];
  uint64_t total;
  uint64_t done;
  double start;
  double last_draw;
};

sw_progress *sw_progress_begin(const char *label, uint64_t total) {
  if (!isatty(STDERR_FILENO) || sw_log_get_level() > SW_LOG_INFO) return NULL;
  sw_progress *p = sw_calloc(1, sizeof *p);
  if (!p) return NULL;
  snprintf(p->label, sizeof p->label, "%s", label);
  p->total = total;
  p->start = sw_now();
  return p;
}

static void draw(sw_progress *p) {
  char bar[31];
  double frac = p->total ? (double)p->done / (double)p->total : 0.0;
  if (frac > 1) frac = 1;
  int fill = (int)(frac * 30);
  memset(bar, '#', (size_t)fill);
  memset(bar + fill, '.', (size_t)(30 - fill));
  bar[30] = '\0';
  double el = sw_now() - p->start;
  double eta = frac > 0 ? el / frac - el : 0;
  fprintf(stderr, "\r%-12s [%s] %5.1f%% %llu/%llu %s %.0fs, ETA %.0fs\033[K", p->label, bar, frac * 100,
          (unsigned long long)p->done, (unsigned long long)p->total, p->note, el, eta);
  fflush(stderr);
}

void sw_progress_update(sw_progress *p, uint64_t done) {
  if (!p) return;
  p->done = done;
  double now = sw_now();
  if (now - p->last_draw < 0.1) return;
  p->last_draw = now;
  draw(p);
}

void sw_progress_note(sw_progress *p, const char *note) {
  if (!p) return;
  snprintf(p->note, sizeof p->note, "%s", note);
}

void sw_progress_end(sw_progress *p) {
  if (!p) return;
  p->done = p->total;
  draw(p);
  fputc('\n', stderr);
  sw_free(p);
}
