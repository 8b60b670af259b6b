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
      "distributed (docs/DISTRIBUTED.md), under `mpirun -np N slipway train ...` or --np:\n"
      "  --np N           run `mpirun -np N` of this command as the (supervised) child\n"
      "  --hosts FILE     mpirun's --hostfile (default: this machine, --oversubscribe)\n"
      "  --shrink-after K with --max-restarts: after K failures in a row at the same\n"
      "                   checkpoint step, relaunch with one rank fewer\n"
      "  --min-ranks M    never shrink below M ranks (1)\n"
      "  --dist MODE      sync (default): each rank computes a slice of every global batch,\n"
      "                   gradients summed by allreduce; async: rank 0 holds the parameters\n"
      "                   and applies each worker's gradient as it comes (Downpour SGD)\n"
      "  --backup-workers B   sync: each step keeps the first N-B ranks' gradients\n"
      "  --max-staleness S    async: drop gradients older than S updates (8)\n"
      "  --bucket-mb X    sync: allreduce bucket size in MB (4)\n"
      "  --dist-check-every K compare parameters across ranks every K steps (always at the end)\n"
      "  --debug-slow-rank R --debug-slow-ms M   rank R sleeps M ms per step (a made straggler)\n"
      "  --debug-crash-rank R --debug-crash-step K   rank R dies (SIGKILL) at step K (tests)\n"
      "  --debug-corrupt-rank R   rank R nudges a parameter after step 1 (tests the check)\n"
      "  Each rank runs one engine thread unless --threads says otherwise.\n"
      "\n"
      "Running again on an existing RUN resumes from its newest good checkpoint. SIGTERM or\n"
      "SIGINT: the current step finishes, a checkpoint is written, exit status 75 (a second\n"
      "signal exits at once). Under mpirun send SIGUSR1 to mpirun (it forwards it to every\n"
      "rank) for the same; --np does that on SIGTERM.\n");
}

static volatile int stop_requested;
static volatile pid_t child_pid;

static volatile int supervising;
static volatile int child_is_mpirun;

static void on_signal(int sig) {
  if (supervising) {
    /* the supervisor passes it on to the training process and restarts nothing after;
     * mpirun kills its ranks on SIGTERM but forwards SIGUSR1, which they take as a stop */
    stop_requested = 1;
    if (child_pid > 0) kill(child_pid, child_is_mpirun ? SIGUSR1 : sig);
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
  sigaction(SIGUSR1, &sa, NULL);
}

typedef struct {
  long long max_restarts;
  long long np;          /* > 0: the child is mpirun -np np */
  const char *hosts;     /* mpirun --hostfile */
  long long shrink_after; /* 0: never */
  long long min_ranks;
  const char *out_dir;
} supervise_options;

/* The step of RUN's newest checkpoint (checkpoints/latest names it), -1 when none. */
static long long latest_checkpoint_step(const char *out_dir) {
  char path[4096], name[64] = {0};
  snprintf(path, sizeof path, "%s/checkpoints/latest", out_dir);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(name, 1, sizeof name - 1, f);
  fclose(f);
  name[n] = '\0';
  long long step = -1;
  if (sscanf(name, "step-%lld", &step) != 1) return -1;
  return step;
}

/* The flags that only the supervisor acts on (and their values), left out of the child's. */
static int supervisor_flag(const char *a) {
  static const char *const with_value[] = {"--max-restarts", "--np", "--hosts", "--shrink-after", "--min-ranks"};
  for (size_t i = 0; i < sizeof with_value / sizeof *with_value; i++) {
    size_t n = strlen(with_value[i]);
    if (!strcmp(a, with_value[i])) return 2;
    if (!strncmp(a, with_value[i], n) && a[n] == '=') return 1;
  }
  return 0;
}

/* --max-restarts / --np: training runs as a child (this same command without the
 * supervisor's flags, under mpirun for --np) and is restarted from its last checkpoint
 * whenever it dies, with back-off, like torchrun. A dead rank ends the whole MPI job (no
 * ULFM in Open MPI 4.1), so the whole job is relaunched; after --shrink-after failures in
 * a row at the same checkpoint step, with one rank fewer (not below --min-ranks). */
static int supervise(int argc, char **argv, const supervise_options *so) {
  /* the child's arguments: [mpirun flags] self train ARGS; restarts without --force-new,
   * which only the first start may act on */
  size_t cap = (size_t)argc + 24;
  char **first_args = calloc(cap, sizeof *first_args), **args = calloc(cap, sizeof *args);
  char np_text[32];
  if (!first_args || !args) {
    free(first_args);
    free(args);
    return SW_EXIT_FAILURE;
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
  const char *mpirun = getenv("SLIPWAY_MPIRUN") ? getenv("SLIPWAY_MPIRUN") : "mpirun";
  int k = 0, np_at = -1;
  if (so->np > 0) {
    args[k++] = (char *)mpirun;
    if (geteuid() == 0) args[k++] = "--allow-run-as-root";
    if (so->hosts) {
      args[k++] = "--hostfile";
      args[k++] = (char *)so->hosts;
    } else {
      /* one machine: more ranks than cores is the user's call, and ranks float */
      args[k++] = "--oversubscribe";
      args[k++] = "--bind-to";
      args[k++] = "none";
    }
    args[k++] = "-np";
    np_at = k;
    args[k++] = np_text;
  }
  args[k++] = self;
  args[k++] = "train";
  int f = 0;
  for (int i = 0; i < k; i++) first_args[f++] = args[i];
  for (int i = 1; i < argc; i++) {
    int skip = supervisor_flag(argv[i]);
    if (skip) {
      i += skip - 1;
      continue;
    }
    first_args[f++] = argv[i];
    if (!strcmp(argv[i], "--force-new") || !strcmp(argv[i], "--overwrite")) continue;
    args[k++] = argv[i];
  }
  long long restarts = 0, np = so->np, same_step_failures = 0, last_fail_step = -2;
  double lost = 0;
  int rc = SW_EXIT_FAILURE;
  bool first = true;
  supervising = 1;
  child_is_mpirun = so->np > 0;
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigaddset(&term, SIGINT);
  for (;;) {
    snprintf(np_text, sizeof np_text, "%lld", np);
    if (np_at >= 0) first_args[np_at] = args[np_at] = np_text;
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
      signal(SIGUSR1, SIG_DFL);
      sigprocmask(SIG_SETMASK, &old, NULL);
      char **a = first ? first_args : args;
      if (so->np > 0) execvp(a[0], a);
      else execv(self, a);
      fprintf(stderr, "slipway train: cannot run %s: %s\n", a[0], strerror(errno));
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
                              WEXITSTATUS(status) == SW_EXIT_PREEMPTED || WEXITSTATUS(status) == SW_EXIT_REFUSED ||
                              WEXITSTATUS(status) == 127)) {
      rc = WEXITSTATUS(status) == 127 ? SW_EXIT_FAILURE : WEXITSTATUS(status); /* done, or a reason a restart would not fix */
      break;
    }
    if (stop_requested) { /* stopped by a signal we passed on: its end is not a crash */
      rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    char why[64];
    if (WIFSIGNALED(status)) snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(status));
    else snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(status));
    if (restarts >= so->max_restarts) {
      fprintf(stderr, "slipway train: training %s; giving up after %lld restarts (--max-restarts %lld)\n", why,
              restarts, so->max_restarts);
      rc = SW_EXIT_FAILURE;
      break;
    }
    long long at = latest_checkpoint_step(so->out_dir);
    same_step_failures = at == last_fail_step ? same_step_failures + 1 : 1;
    last_fail_step = at;
    if (so->np > 0 && so->shrink_after > 0 && same_step_failures >= so->shrink_after && np > so->min_ranks) {
      np--;
      same_step_failures = 0;
      fprintf(stderr, "slipway train: %lld failures in a row at step %lld; relaunching with %lld ranks\n",
              so->shrink_after, at < 0 ? 0 : at, np);
    }
    double backoff = restarts < 5 ? 0.5 * (double)(1 << restarts) : 16.0;
    restarts++;
    lost += backoff;
    fprintf(stderr, "slipway train: training %s after %.1fs; restart %lld of %lld in %.1fs from the last checkpoint\n",
            why, ran, restarts, so->max_restarts, backoff);
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
         OPT_CK_STEPS, OPT_CK_SECONDS, OPT_KEEP, OPT_MTBF, OPT_RESTARTS, OPT_NP, OPT_HOSTS, OPT_SHRINK, OPT_MIN_RANKS,
         OPT_DIST, OPT_BACKUP, OPT_STALENESS, OPT_BUCKET, OPT_CHECK_EVERY, OPT_SLOW_RANK, OPT_SLOW_MS,
         OPT_CRASH_RANK, OPT_CRASH_STEP, OPT_CORRUPT_RANK };
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
      {"np", required_argument, 0, OPT_NP},           {"hosts", required_argument, 0, OPT_HOSTS},
      {"shrink-after", required_argument, 0, OPT_SHRINK}, {"min-ranks", required_argument, 0, OPT_MIN_RANKS},
      {"dist", required_argument, 0, OPT_DIST},       {"backup-workers", required_argument, 0, OPT_BACKUP},
      {"max-staleness", required_argument, 0, OPT_STALENESS}, {"bucket-mb", required_argument, 0, OPT_BUCKET},
      {"dist-check-every", required_argument, 0, OPT_CHECK_EVERY},
      {"debug-slow-rank", required_argument, 0, OPT_SLOW_RANK}, {"debug-slow-ms", required_argument, 0, OPT_SLOW_MS},
      {"debug-crash-rank", required_argument, 0, OPT_CRASH_RANK}, {"debug-crash-step", required_argument, 0, OPT_CRASH_STEP},
      {"debug-corrupt-rank", required_argument, 0, OPT_CORRUPT_RANK},
      {"help", no_argument, 0, OPT_HELP},             {0, 0, 0, 0}};
  sw_train_options o = {0};
  o.seed = -1;
  o.debug_slow_rank = o.debug_crash_rank = o.debug_corrupt_rank = -1;
  supervise_options so = {.max_restarts = -1, .min_ranks = 1};
  bool as_json = false, dist_given = false;
  long long n;
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
        so.max_restarts = n;
        break;
      case OPT_NP:
        if (!sw_cli_parse_int(optarg, 1, 100000, &n)) return sw_cli_usage_error("train", "--np: '%s' is not a count >= 1", optarg);
        so.np = n;
        break;
      case OPT_HOSTS: so.hosts = optarg; break;
      case OPT_SHRINK:
        if (!sw_cli_parse_int(optarg, 1, 1000000, &n)) return sw_cli_usage_error("train", "--shrink-after: '%s' is not a count >= 1", optarg);
        so.shrink_after = n;
        break;
      case OPT_MIN_RANKS:
        if (!sw_cli_parse_int(optarg, 1, 100000, &n)) return sw_cli_usage_error("train", "--min-ranks: '%s' is not a count >= 1", optarg);
        so.min_ranks = n;
        break;
      case OPT_DIST:
        if (!strcmp(optarg, "sync")) o.dist = SW_DIST_SYNC;
        else if (!strcmp(optarg, "async")) o.dist = SW_DIST_ASYNC;
        else return sw_cli_usage_error("train", "--dist: '%s' is not sync or async", optarg);
        dist_given = true;
        break;
      case OPT_BACKUP:
        if (!sw_cli_parse_int(optarg, 0, 100000, &n)) return sw_cli_usage_error("train", "--backup-workers: '%s' is not a count >= 0", optarg);
        o.backup_workers = (int)n;
        break;
      case OPT_STALENESS:
        if (!sw_cli_parse_int(optarg, 1, 1000000, &n)) return sw_cli_usage_error("train", "--max-staleness: '%s' is not a count >= 1", optarg);
        o.max_staleness = n;
        break;
      case OPT_BUCKET:
        if (!sw_cli_parse_double(optarg, 0.004, 1024, &d)) return sw_cli_usage_error("train", "--bucket-mb: '%s' is not a size from 0.004 to 1024", optarg);
        o.bucket_mb = d;
        break;
      case OPT_CHECK_EVERY:
        if (!sw_cli_parse_int(optarg, 1, (long long)1 << 40, &n)) return sw_cli_usage_error("train", "--dist-check-every: '%s' is not a count >= 1", optarg);
        o.dist_check_every = n;
        break;
      case OPT_SLOW_RANK:
        if (!sw_cli_parse_int(optarg, 0, 100000, &n)) return sw_cli_usage_error("train", "--debug-slow-rank: '%s' is not a rank", optarg);
        o.debug_slow_rank = (int)n;
        break;
      case OPT_SLOW_MS:
        if (!sw_cli_parse_int(optarg, 0, 3600000, &n)) return sw_cli_usage_error("train", "--debug-slow-ms: '%s' is not a count of ms", optarg);
        o.debug_slow_ms = (int)n;
        break;
      case OPT_CRASH_RANK:
        if (!sw_cli_parse_int(optarg, 0, 100000, &n)) return sw_cli_usage_error("train", "--debug-crash-rank: '%s' is not a rank", optarg);
        o.debug_crash_rank = (int)n;
        break;
      case OPT_CRASH_STEP:
        if (!sw_cli_parse_int(optarg, 1, (long long)1 << 50, &n)) return sw_cli_usage_error("train", "--debug-crash-step: '%s' is not a step >= 1", optarg);
        o.debug_crash_step = n;
        break;
      case OPT_CORRUPT_RANK:
        if (!sw_cli_parse_int(optarg, 1, 100000, &n)) return sw_cli_usage_error("train", "--debug-corrupt-rank: '%s' is not a rank >= 1", optarg);
        o.debug_corrupt_rank = (int)n;
        break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("train", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return sw_cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
  if (!o.model_path || !o.data_dir || !o.out_dir) return sw_cli_usage_error("train", "--model, --data and --out are required");
  if (o.steps && o.epochs) return sw_cli_usage_error("train", "give --steps or --epochs, not both");
  if (o.mtbf_seconds > 0 && !o.checkpoint_auto) return sw_cli_usage_error("train", "--mtbf goes with --checkpoint-every-steps auto");
  if (o.max_staleness > 0 && o.dist != SW_DIST_ASYNC) return sw_cli_usage_error("train", "--max-staleness goes with --dist async");
  if (o.backup_workers > 0 && o.dist == SW_DIST_ASYNC) return sw_cli_usage_error("train", "--backup-workers goes with --dist sync");
  if ((o.debug_slow_rank >= 0) != (o.debug_slow_ms > 0))
    return sw_cli_usage_error("train", "--debug-slow-rank and --debug-slow-ms go together");
  if ((o.debug_crash_rank >= 0) != (o.debug_crash_step > 0))
    return sw_cli_usage_error("train", "--debug-crash-rank and --debug-crash-step go together");
  if ((so.hosts || so.shrink_after) && !so.np) return sw_cli_usage_error("train", "--hosts and --shrink-after go with --np");
  if (so.shrink_after && so.max_restarts < 0) return sw_cli_usage_error("train", "--shrink-after goes with --max-restarts");
  if (so.np && so.min_ranks > so.np) return sw_cli_usage_error("train", "--min-ranks %lld is more than --np %lld", so.min_ranks, so.np);
  bool under_mpi = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
  if (under_mpi && (so.np || so.max_restarts >= 0))
    return sw_cli_usage_error("train", "--np and --max-restarts start mpirun themselves: run `slipway train --np N` outside mpirun");
#ifndef SW_HAVE_MPI
  if (so.np) return sw_cli_usage_error("train", "--np: this slipway was built without MPI (cmake -DSW_MPI=ON)");
#endif
  if (!so.np && !under_mpi && (dist_given || o.backup_workers || o.debug_slow_ms))
    SW_INFO("not started by mpirun: training on one process (--dist flags apply to ranks)");
  install_handlers();
  if (so.max_restarts >= 0 || so.np) {
    if (so.max_restarts < 0) so.max_restarts = 0;
    so.out_dir = o.out_dir;
    return supervise(argc, argv, &so);
  }
  int rank = 0, size = 1;
  sw_status st = sw_dist_init(NULL, NULL, &rank, &size);
  if (st) {
    fprintf(stderr, "slipway train: %s\n", sw_last_error());
    return sw_cli_exit_code(st);
  }
  if (size > 1 && o.debug_slow_rank >= size)
    SW_WARN("--debug-slow-rank %d: there are only %d ranks", o.debug_slow_rank, size);
  o.stop = (volatile int *)&stop_requested;
  json_t *summary = NULL;
  st = sw_train_run(&o, &summary);
  if (st) {
    if (size > 1) fprintf(stderr, "slipway train (rank %d): %s\n", rank, sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
    else fprintf(stderr, "slipway train: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
  }
  sw_dist_finish(st != SW_STATUS_OK && st != SW_STATUS_PREEMPTED);
  if (st) return sw_cli_exit_code(st);
  if (rank != 0) { /* rank 0 reports for the job */
    json_decref(summary);
    return SW_EXIT_OK;
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
