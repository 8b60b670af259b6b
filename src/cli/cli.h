/* The command line's own header: one function per subcommand, and the flag helpers they
 * share. Only src/cli parses argv; the work is done by the library. */
#ifndef SLIPWAY_CLI_H
#define SLIPWAY_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "slipway/base.h"

/* Exit codes (DESIGN.md). */
enum {
  SW_EXIT_OK = 0,
  SW_EXIT_FAILURE = 1,
  SW_EXIT_USAGE = 2,
  SW_EXIT_REFUSED = 3,
  SW_EXIT_PREEMPTED = 75
};

int sw_cmd_prep(int argc, char **argv);
int sw_cmd_train(int argc, char **argv);
int sw_cmd_eval(int argc, char **argv);
int sw_cmd_predict(int argc, char **argv);
int sw_cmd_export(int argc, char **argv);
int sw_cmd_registry(int argc, char **argv);
int sw_cmd_monitor(int argc, char **argv);
int sw_cmd_serve(int argc, char **argv);
int sw_cmd_rollout(int argc, char **argv);
int sw_cmd_pipeline(int argc, char **argv);
int sw_cmd_loadgen(int argc, char **argv);

/* Prints "slipway CMD: message" and the hint to stderr; returns SW_EXIT_USAGE. */
int sw_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Strict number parsing of flag values: false when s is not entirely a number in range. */
bool sw_cli_parse_int(const char *s, long long min, long long max, long long *out);
bool sw_cli_parse_u64(const char *s, uint64_t *out);
bool sw_cli_parse_double(const char *s, double min, double max, double *out);
/* Exit code for a library status (REFUSED -> 3, INVALID -> 2, others 1). */
int sw_cli_exit_code(sw_status st);

#endif
