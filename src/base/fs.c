/* Files: atomic writes (temp name, fsync, rename, fsync the directory), directories,
 * whole-file reads. Checkpoints, manifests and datasets are all written through here. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slipway/base.h"

struct sw_atomic_file {
  char *path;
  char *tmp_path;
  FILE *f;
};

char *sw_path_dirname(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return sw_strdup(".");
  if (slash == path) return sw_strdup("/");
  return sw_strndup(path, (size_t)(slash - path));
}

char *sw_path_join(const char *a, const char *b) {
  size_t la = strlen(a);
  if (la && a[la - 1] == '/') return sw_asprintf("%s%s", a, b);
  return sw_asprintf("%s/%s", a, b);
}

bool sw_path_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

bool sw_path_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

sw_status sw_fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return sw_error(SW_STATUS_IO, "open directory %s: %s", dir, strerror(errno));
  sw_status st = SW_STATUS_OK;
  if (fsync(fd) != 0 && errno != EINVAL)
    st = sw_error(SW_STATUS_IO, "fsync directory %s: %s", dir, strerror(errno));
  close(fd);
  return st;
}

sw_status sw_mkdir_p(const char *dir) {
  if (!dir[0]) return sw_error(SW_STATUS_INVALID, "mkdir: empty path");
  char *p = sw_strdup(dir);
  if (!p) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = SW_STATUS_OK;
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        st = sw_error(SW_STATUS_IO, "mkdir %s: %s", p, strerror(errno));
        break;
      }
      *s = c;
      if (c == '\0') break;
    }
  }
  if (!st && !sw_path_is_dir(dir)) st = sw_error(SW_STATUS_IO, "%s exists and is not a directory", dir);
  sw_free(p);
  return st;
}

sw_status sw_remove_tree(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) {
    if (errno == ENOENT) return SW_STATUS_OK;
    return sw_error(SW_STATUS_IO, "stat %s: %s", path, strerror(errno));
  }
  if (S_ISDIR(sb.st_mode)) {
    DIR *d = opendir(path);
    if (!d) return sw_error(SW_STATUS_IO, "opendir %s: %s", path, strerror(errno));
    struct dirent *e;
    sw_status st = SW_STATUS_OK;
    while (!st && (e = readdir(d)) != NULL) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char *child = sw_path_join(path, e->d_name);
      if (!child) {
        st = sw_error(SW_STATUS_NOMEM, "out of memory");
        break;
      }
      st = sw_remove_tree(child);
      sw_free(child);
    }
    closedir(d);
    if (st) return st;
    if (rmdir(path) != 0) return sw_error(SW_STATUS_IO, "rmdir %s: %s", path, strerror(errno));
    return SW_STATUS_OK;
  }
  if (unlink(path) != 0) return sw_error(SW_STATUS_IO, "unlink %s: %s", path, strerror(errno));
  return SW_STATUS_OK;
}

sw_status sw_read_file(const char *path, uint8_t **data, size_t *len) {
  *data = NULL;
  *len = 0;
  sw_status st = SW_STATUS_OK;
  FILE *f = fopen(path, "rb");
  if (!f) return sw_error(errno == ENOENT ? SW_STATUS_NOT_FOUND : SW_STATUS_IO, "open %s: %s", path,
                          strerror(errno));
  sw_buf b = {0};
  uint8_t chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    st = sw_buf_append(&b, chunk, n);
    if (st) goto out;
  }
  if (ferror(f)) {
    st = sw_error(SW_STATUS_IO, "read %s: %s", path, strerror(errno));
    goto out;
  }
  st = sw_buf_append(&b, "", 0); /* NUL-terminate an empty file too */
  if (st) goto out;
  *data = b.data;
  *len = b.len;
  b.data = NULL;
out:
  sw_buf_free(&b);
  fclose(f);
  return st;
}

sw_status sw_atomic_file_open(const char *path, sw_atomic_file **out) {
  *out = NULL;
  sw_atomic_file *af = sw_calloc(1, sizeof *af);
  if (!af) return sw_error(SW_STATUS_NOMEM, "out of memory");
  af->path = sw_strdup(path);
  af->tmp_path = sw_asprintf("%s.tmp.XXXXXX", path);
  if (!af->path || !af->tmp_path) {
    sw_atomic_file_abort(af);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  int fd = mkstemp(af->tmp_path);
  if (fd < 0) {
    sw_status st = sw_error(SW_STATUS_IO, "create %s: %s", af->tmp_path, strerror(errno));
    sw_free(af->tmp_path);
    af->tmp_path = NULL;
    sw_atomic_file_abort(af);
    return st;
  }
  fchmod(fd, 0644);
  af->f = fdopen(fd, "wb");
  if (!af->f) {
    close(fd);
    sw_atomic_file_abort(af);
    return sw_error(SW_STATUS_IO, "fdopen: %s", strerror(errno));
  }
  *out = af;
  return SW_STATUS_OK;
}

FILE *sw_atomic_file_stream(sw_atomic_file *af) { return af->f; }

void sw_atomic_file_abort(sw_atomic_file *af) {
  if (!af) return;
  if (af->f) fclose(af->f);
  if (af->tmp_path) unlink(af->tmp_path);
  sw_free(af->tmp_path);
  sw_free(af->path);
  sw_free(af);
}

sw_status sw_atomic_file_commit(sw_atomic_file *af) {
  sw_status st = SW_STATUS_OK;
  char *dir = sw_path_dirname(af->path); /* before the rename: after it, nothing may fail */
  if (!dir) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto fail;
  }
  if (fflush(af->f) != 0 || ferror(af->f)) {
    st = sw_error(SW_STATUS_IO, "write %s: %s", af->path, strerror(errno));
    goto fail;
  }
  if (fsync(fileno(af->f)) != 0) {
    st = sw_error(SW_STATUS_IO, "fsync %s: %s", af->path, strerror(errno));
    goto fail;
  }
  if (fclose(af->f) != 0) {
    af->f = NULL;
    st = sw_error(SW_STATUS_IO, "close %s: %s", af->path, strerror(errno));
    goto fail;
  }
  af->f = NULL;
  if (rename(af->tmp_path, af->path) != 0) {
    st = sw_error(SW_STATUS_IO, "rename %s to %s: %s", af->tmp_path, af->path, strerror(errno));
    goto fail;
  }
  sw_free(af->tmp_path);
  af->tmp_path = NULL;
  st = sw_fsync_dir(dir);
fail:
  sw_free(dir);
  sw_atomic_file_abort(af);
  return st;
}

sw_status sw_atomic_write(const char *path, const void *data, size_t len) {
  sw_atomic_file *af;
  sw_status st = sw_atomic_file_open(path, &af);
  if (st) return st;
  if (len && fwrite(data, 1, len, af->f) != len) {
    st = sw_error(SW_STATUS_IO, "write %s: %s", path, strerror(errno));
    sw_atomic_file_abort(af);
    return st;
  }
  return sw_atomic_file_commit(af);
}
