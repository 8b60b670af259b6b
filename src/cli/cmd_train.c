/* slipway train: flags in, sw_train_run does the work, a summary (or --json) out. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "slipway/train.h"

static void help(void) {
  printf(
      "usage: slipway train --model MODEL.yaml --data DIR --out RUN [flags]\n"
      "\n"
      "Trains the model file on a dataset made by `slipway prep` and writes the run dir:\n"
      "run.json (config, dataset SHA-256, code version, host, params_sha256), model.yaml,\n"
      "model.safetensors, metrics.jsonl and TensorBoard event files. Validation metrics on\n"
      "the val split after every epoch.\n"
      "\n"
      "flags:\n"
      "  --steps N        train N steps (overrides the model file)\n"
      "  --epochs E       train E epochs (overrides the model file)\n"
      "  --threads T      CPU threads (default: all cores)\n"
      "  --seed S         seed of initialization, shuffling and dropout (overrides the model file)\n"
      "  --log-every N    steps between metrics lines (50)\n"
      "  --force-new      start over even if RUN holds a run (alias: --overwrite)\n"
      "  --checkpoint-every-steps N|auto   checkpoint every N steps; auto: Young's interval\n"
      "                   sqrt(2 * cost * MTBF) from the measured cost of one checkpoint\n"
      "  --mtbf SECONDS   mean time between failures for auto (86400)\n"
      "  --checkpoint-every-seconds T      checkpoint every T seconds (default 60 when no\n"
      "                   interval is given)\n"
      "  --keep K         checkpoints kept (3)\n"
      "  --max-restarts N run training in a child process and restart it from its last\n"
      "                   checkpoint whenever it dies (crash, OOM kill, kill -9), up to N times\n"
      "  --json           print the run summary as JSON\n"
      "\n"
      "Running again on an existing RUN resumes from its newest good checkpoint. SIGTERM or\n"
      "SIGINT: the current step finishes, a checkpoint is written, exit status 75 (a second\n"
      "signal exits at once).\n");
}

static volatile int stop_requested;
static volatile pid_t child_pid;

static volatile int supervising;

static void on_signal(int sig) {
  if (supervising) {
    /* the supervisor passes it on to the training process and restarts nothing after */
    stop_requested = 1;
    if (child_pid > 0) kill(child_pid, sig);
    return;
  }
  if (stop_requested) _exit(128 + sig); /* a second signal: at once */
  stop_requested = 1;
}

static void install_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
}

/* --max-restarts: training runs as a child (this same command without the flag) and is
 * restarted from its last checkpoint whenever it dies, with back-off, like torchrun. */
static int supervise(int argc, char **argv, long long max_restarts) {
  /* the child's arguments: without --max-restarts; restarts also without --force-new,
   * which only the first start may act on */
  char **first_args = calloc((size_t)argc + 2, sizeof *first_args), **args = calloc((size_t)argc + 2, sizeof *args);
  if (!first_args || !args) {
    free(first_args);
    free(args);
    return SW_EXIT_FAILURE;
  }
  int k = 0, f = 0;
  args[k++] = first_args[f++] = "slipway";
  args[k++] = first_args[f++] = "train";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--max-restarts")) {
      i++;
      continue;
    }
    if (!strncmp(argv[i], "--max-restarts=", 15)) continue;
    first_args[f++] = argv[i];
    if (!strcmp(argv[i], "--force-new") || !strcmp(argv[i], "--overwrite")) continue;
    args[k++] = argv[i];
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    free(args);
    free(first_args);
    fprintf(stderr, "slipway train: cannot find its own executable\n");
    return SW_EXIT_FAILURE;
  }
  self[n] = '\0';
  long long restarts = 0;
  double lost = 0;
  int rc = SW_EXIT_FAILURE;
  bool first = true;
  supervising = 1;
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigaddset(&term, SIGINT);
  for (;;) {
    double started = sw_now();
    /* signals wait while the child is forked, so none falls between fork and child_pid */
    sigprocmask(SIG_BLOCK, &term, &old);
    if (stop_requested) { /* stopped while waiting to restart: nothing to pass on */
      sigprocmask(SIG_SETMASK, &old, NULL);
      rc = SW_EXIT_PREEMPTED;
      break;
    }
    pid_t pid = fork();
    if (pid < 0) {
      sigprocmask(SIG_SETMASK, &old, NULL);
      fprintf(stderr, "slipway train: fork: %s\n", strerror(errno));
      break;
    }
    if (pid == 0) {
      signal(SIGTERM, SIG_DFL);
      signal(SIGINT, SIG_DFL);
      sigprocmask(SIG_SETMASK, &old, NULL);
      execv(self, first ? first_args : args);
      _exit(127);
    }
    child_pid = pid;
    sigprocmask(SIG_SETMASK, &old, NULL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    child_pid = 0;
    first = false;
    double ran = sw_now() - started;
    if (WIFEXITED(status) && (WEXITSTATUS(status) == SW_EXIT_OK || WEXITSTATUS(status) == SW_EXIT_USAGE ||
                              WEXITSTATUS(status) == SW_EXIT_PREEMPTED || WEXITSTATUS(status) == SW_EXIT_REFUSED)) {
      rc = WEXITSTATUS(status); /* done, or a reason a restart would not fix */
      break;
    }
    if (stop_requested) { /* stopped by a signal we passed on: its end is not a crash */
      rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    char why[64];
    if (WIFSIGNALED(status)) snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(status));
    else snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(status));
    if (restarts >= max_restarts) {
      fprintf(stderr, "slipway train: training %s; giving up after %lld restarts (--max-restarts %lld)\n", why,
              restarts, max_restarts);
      rc = SW_EXIT_FAILURE;
      break;
    }
    double backoff = restarts < 5 ? 0.5 * (double)(1 << restarts) : 16.0;
    restarts++;
    lost += backoff;
    fprintf(stderr, "slipway train: training %s after %.1fs; restart %lld of %lld in %.1fs from the last checkpoint\n",
            why, ran, restarts, max_restarts, backoff);
    usleep((useconds_t)(backoff * 1e6));
  }
  if (restarts)
    fprintf(stderr, "slipway train: %lld restart(s), %.1fs spent waiting to restart (plus the steps redone since each "
                    "last checkpoint)\n", restarts, lost);
  free(args);
  free(first_args);
  return rc;
}

int sw_cmd_train(int argc, char **argv) {
  enum { OPT_MODEL = 256, OPT_DATA, OPT_OUT, OPT_STEPS, OPT_EPOCHS, OPT_THREADS, OPT_SEED, OPT_LOG, OPT_OVERWRITE, OPT_JSON, OPT_HELP,
         OPT_CK_STEPS, OPT_CK_SECONDS, OPT_KEEP, OPT_MTBF, OPT_RESTARTS };
  static const struct option longopts[] = {
      {"model", required_argument, 0, OPT_MODEL},     {"data", required_argument, 0, OPT_DATA},
      {"out", required_argument, 0, OPT_OUT},         {"steps", required_argument, 0, OPT_STEPS},
      {"epochs", required_argument, 0, OPT_EPOCHS},   {"threads", required_argument, 0, OPT_THREADS},
      {"seed", required_argument, 0, OPT_SEED},       {"log-every", required_argument, 0, OPT_LOG},
      {"overwrite", no_argument, 0, OPT_OVERWRITE},   {"force-new", no_argument, 0, OPT_OVERWRITE},
      {"json", no_argument, 0, OPT_JSON},
      {"checkpoint-every-steps", required_argument, 0, OPT_CK_STEPS},
      {"checkpoint-every-seconds", required_argument, 0, OPT_CK_SECONDS},
      {"keep", required_argument, 0, OPT_KEEP},       {"mtbf", required_argument, 0, OPT_MTBF},
      {"max-restarts", required_argument, 0, OPT_RESTARTS},
      {"help", no_argument, 0, OPT_HELP},             {0, 0, 0, 0}};
  sw_train_options o = {0};
  o.seed = -1;
  bool as_json = false;
  long long n, max_restarts = -1;
  double d;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_MODEL: o.model_path = optarg; break;
      case OPT_DATA: o.data_dir = optarg; break;
      case OPT_OUT: o.out_dir = optarg; break;
      case OPT_STEPS:
        if (!sw_cli_parse_int(optarg, 1, (long long)1 << 50, &n)) return sw_cli_usage_error("train", "--steps: '%s' is not a count >= 1", optarg);
        o.steps = n;
        break;
      case OPT_EPOCHS:
        if (!sw_cli_parse_int(optarg, 1, 1000000, &n)) return sw_cli_usage_error("train", "--epochs: '%s' is not a count >= 1", optarg);
        o.epochs = n;
        break;
      case OPT_THREADS:
        if (!sw_cli_parse_int(optarg, 1, 1024, &n)) return sw_cli_usage_error("train", "--threads: '%s' is not a count from 1 to 1024", optarg);
        o.threads = (int)n;
        break;
      case OPT_SEED:
        if (!sw_cli_parse_int(optarg, 0, (long long)1 << 62, &n)) return sw_cli_usage_error("train", "--seed: '%s' is not a non-negative integer", optarg);
        o.seed = n;
        break;
      case OPT_LOG:
        if (!sw_cli_parse_int(optarg, 1, (long long)1 << 40, &n)) return sw_cli_usage_error("train", "--log-every: '%s' is not a count >= 1", optarg);
        o.log_every = n;
        break;
      case OPT_OVERWRITE: o.overwrite = true; break;
      case OPT_JSON: as_json = true; break;
      case OPT_CK_STEPS:
        if (!strcmp(optarg, "auto")) o.checkpoint_auto = true;
        else if (!sw_cli_parse_int(optarg, 1, (long long)1 << 50, &n)) return sw_cli_usage_error("train", "--checkpoint-every-steps: '%s' is not a count >= 1 or auto", optarg);
        else o.checkpoint_every_steps = n;
        break;
      case OPT_CK_SECONDS:
        if (!sw_cli_parse_double(optarg, 0.001, 1e9, &d)) return sw_cli_usage_error("train", "--checkpoint-every-seconds: '%s' is not a number > 0", optarg);
        o.checkpoint_every_seconds = d;
        break;
      case OPT_KEEP:
        if (!sw_cli_parse_int(optarg, 1, 1000000, &n)) return sw_cli_usage_error("train", "--keep: '%s' is not a count >= 1", optarg);
        o.keep = (int)n;
        break;
      case OPT_MTBF:
        if (!sw_cli_parse_double(optarg, 1, 1e12, &d)) return sw_cli_usage_error("train", "--mtbf: '%s' is not a number of seconds", optarg);
        o.mtbf_seconds = d;
        break;
      case OPT_RESTARTS:
        if (!sw_cli_parse_int(optarg, 0, 1000000, &n)) return sw_cli_usage_error("train", "--max-restarts: '%s' is not a count >= 0", optarg);
        max_restarts = n;
        break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("train", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return sw_cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
  if (!o.model_path || !o.data_dir || !o.out_dir) return sw_cli_usage_error("train", "--model, --data and --out are required");
  if (o.steps && o.epochs) return sw_cli_usage_error("train", "give --steps or --epochs, not both");
  if (o.mtbf_seconds > 0 && !o.checkpoint_auto) return sw_cli_usage_error("train", "--mtbf goes with --checkpoint-every-steps auto");
  install_handlers();
  if (max_restarts >= 0) return supervise(argc, argv, max_restarts);
  o.stop = (volatile int *)&stop_requested;
  json_t *summary = NULL;
  sw_status st = sw_train_run(&o, &summary);
  if (st) {
    fprintf(stderr, "slipway train: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
    return sw_cli_exit_code(st);
  }
  if (as_json) {
    json_dumpf(summary, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
  } else {
    const json_t *val = json_object_get(summary, "val");
    printf("trained %lld steps (%lld epochs) in %.1fs, %.0f samples/s\n",
           (long long)json_integer_value(json_object_get(summary, "steps_done")),
           (long long)json_integer_value(json_object_get(summary, "epochs_done")),
           json_real_value(json_object_get(summary, "seconds")), json_real_value(json_object_get(summary, "samples_per_sec")));
    if (val && json_object_get(val, "accuracy"))
      printf("val accuracy %.4f, loss %.4f\n", json_real_value(json_object_get(val, "accuracy")),
             json_real_value(json_object_get(val, "loss")));
    printf("params_sha256 %s\nwrote %s\n", json_string_value(json_object_get(summary, "params_sha256")), o.out_dir);
  }
  json_decref(summary);
  return SW_EXIT_OK;
}
