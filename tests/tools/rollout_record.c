/* A helper of the dashboard's browser test: writes rollout records and their effects
 * through the registry's API (sw_registry_rollout_create/update, sw_registry_state_set,
 * sw_registry_alias_set) as the rollout controller does, so the dashboard can be tested
 * on records of the shape the controller writes before the controller itself is in.
 *
 *   sw_rollout_record REGISTRY HOME create SPEC_JSON          prints the new id
 *   sw_rollout_record REGISTRY HOME update ID FIELDS_JSON
 *   sw_rollout_record REGISTRY HOME state NAME VERSION STATE WHY
 *   sw_rollout_record REGISTRY HOME alias NAME ALIAS VERSION WHY
 * Exit 0 on success, 1 with the library's message on stderr otherwise, 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/registry.h"

static json_t *parse(const char *text) {
  json_error_t err;
  json_t *j = json_loads(text, 0, &err);
  if (!j) fprintf(stderr, "sw_rollout_record: bad JSON: %s\n", err.text);
  return j;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: sw_rollout_record REGISTRY HOME create SPEC | update ID FIELDS | state NAME V STATE WHY | "
                    "alias NAME ALIAS V WHY\n");
    return 2;
  }
  sw_registry *reg = NULL;
  json_t *j = NULL;
  int rc = 1;
  sw_status st = sw_registry_open(argv[1], argv[2], &reg);
  const char *cmd = argv[3];
  if (st) goto out;
  if (!strcmp(cmd, "create") && argc == 5) {
    int64_t id = 0;
    if (!(j = parse(argv[4]))) goto out;
    st = sw_registry_rollout_create(reg, j, "rollout", &id);
    if (!st) printf("%lld\n", (long long)id);
  } else if (!strcmp(cmd, "update") && argc == 6) {
    if (!(j = parse(argv[5]))) goto out;
    st = sw_registry_rollout_update(reg, strtoll(argv[4], NULL, 10), j, "rollout");
  } else if (!strcmp(cmd, "state") && argc == 8) {
    st = sw_registry_state_set(reg, argv[4], strtoll(argv[5], NULL, 10), argv[6], "rollout", argv[7]);
  } else if (!strcmp(cmd, "alias") && argc == 8) {
    st = sw_registry_alias_set(reg, argv[4], argv[5], strtoll(argv[6], NULL, 10), "rollout", argv[7]);
  } else {
    fprintf(stderr, "sw_rollout_record: unknown command or wrong number of arguments\n");
    rc = 2;
    goto out;
  }
  rc = st ? 1 : 0;
out:
  if (st) fprintf(stderr, "sw_rollout_record: %s\n", sw_last_error());
  json_decref(j);
  sw_registry_close(reg);
  return rc;
}
