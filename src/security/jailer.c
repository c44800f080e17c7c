// flick-jailer: the first step of a jailed VMM's start, in one exec (it runs on
// every wake, so it replaces `unshare` + `sh` + `mount`). Built and cached by
// src/security/jailer.ts; used by src/vmm/qemu/jail.ts.
//
//   flick-jailer <run dir> <mount point> <cgroup dir>... -- <program> <args>...
//
// Joins each cgroup (writes its own pid to <dir>/cgroup.procs), enters a mount
// namespace of its own with private propagation, bind-mounts <run dir> at
// <mount point> (inside the chroot folder QEMU will -chroot into), turns core
// dumps off (one would hold guest RAM) and execs <program>. Any failure: a
// message on stderr and exit 125, before anything is exec'd.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <unistd.h>

static int fail(const char *what, const char *arg) {
  fprintf(stderr, "flick-jailer: %s %s: %s\n", what, arg, strerror(errno));
  return 125;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: flick-jailer <run dir> <mount point> <cgroup dir>... -- <program> <args>...\n");
    return 125;
  }
  const char *run_dir = argv[1], *mount_point = argv[2];
  int i = 3;
  char pid[32];
  int pid_len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    char procs[4096];
    if (snprintf(procs, sizeof procs, "%s/cgroup.procs", argv[i]) >= (int)sizeof procs) return fail("cgroup path too long:", argv[i]);
    int fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, pid, pid_len) != pid_len) return fail("joining cgroup", argv[i]);
    close(fd);
  }
  if (i + 1 >= argc) {
    fprintf(stderr, "flick-jailer: no program after --\n");
    return 125;
  }
  if (unshare(CLONE_NEWNS) != 0) return fail("unshare", "mount namespace");
  // Private first: the bind mount must not propagate back to the host's namespace.
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return fail("making / private", "");
  if (mount(run_dir, mount_point, NULL, MS_BIND, NULL) != 0) return fail("bind-mounting", run_dir);
  struct rlimit no_core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0) return fail("setrlimit", "RLIMIT_CORE");
  execvp(argv[i + 1], argv + i + 1);
  return fail("exec", argv[i + 1]);
}
