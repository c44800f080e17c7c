// Trace mode (config key trace=1), for image specialization: reports each file
// and directory the app opens or execs, once, as "open <path>" on the control
// port. FAN_MARK_MOUNT on the root: the overlay reports the paths the app sees
// (FAN_MARK_FILESYSTEM would need fsid support from overlayfs). Paths are as
// the kernel resolved them (symlinks followed); only successful opens count.
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <unistd.h>

static char **seen;  // open-addressing set of reported paths
static size_t seen_cap, seen_len;

static size_t hash(const char *s) {
  size_t h = 0;
  for (; *s; s++) h = h * 31 + (unsigned char)*s;
  return h;
}

// 1 if `s` is new (and now remembered), 0 if it was seen before.
static int seen_add(const char *s) {
  if (seen_len * 2 >= seen_cap) {
    size_t cap = seen_cap ? seen_cap * 2 : 1024;
    char **t = calloc(cap, sizeof *t);
    if (!t) return 1;  // out of memory: report duplicates rather than lose paths
    for (size_t i = 0; i < seen_cap; i++) {
      if (!seen[i]) continue;
      size_t h = hash(seen[i]);
      while (t[h % cap]) h++;
      t[h % cap] = seen[i];
    }
    free(seen);
    seen = t, seen_cap = cap;
  }
  for (size_t h = hash(s);; h++) {
    char **slot = &seen[h % seen_cap];
    if (!*slot) {
      *slot = strdup(s);
      seen_len++;
      return 1;
    }
    if (!strcmp(*slot, s)) return 0;
  }
}

int trace_start(void) {
  int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
  if (fd < 0) fail(1, "trace: fanotify_init: %s", strerror(errno));
  if (fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN | FAN_OPEN_EXEC | FAN_ONDIR, AT_FDCWD, "/") < 0)
    fail(1, "trace: fanotify_mark /: %s", strerror(errno));
  return fd;
}

void trace_drain(int fd) {
  char buf[8192] __attribute__((aligned(8)));
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
      if (m->fd < 0) continue;
      char link[64], path[PATH_MAX];
      snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
      ssize_t l = readlink(link, path, sizeof path - 1);
      close(m->fd);
      if (l <= 0 || m->pid == getpid()) continue;  // init's own opens are not the app's
      path[l] = 0;
      if (seen_add(path)) ctl_send("open %s", path);
    }
  }
}
