// flick-jailer: the first step of a jailed VMM's start, in one exec (it runs on
// every wake, so it replaces `unshare` + `sh` + `mount`). Built and cached by
// src/security/jailer.ts; used by src/vmm/qemu/jail.ts.
//
//   flick-jailer <run dir> <mount point> -- <program> <args>...
//
// Enters a mount namespace of its own with private propagation, bind-mounts
// <run dir> at <mount point> (inside the chroot folder QEMU will -chroot
// into), turns core dumps off (one would hold guest RAM), makes the VMM's
// memory mergeable and execs <program>.
// Any failure: a message on stderr and exit 125, before anything is exec'd.
//
// Mergeable (PR_SET_MEMORY_MERGE, Linux >= 6.4; kept across exec since 6.7):
// every anonymous mapping of the VMM, not only the guest RAM QEMU marks itself,
// may be shared with identical pages of other VMMs, but only when the host runs
// ksmd (/sys/kernel/mm/ksm/run = 1: the operator's choice; off by default).
// QEMU's heap, library relocations and zeroed buffers are largely alike across
// clones of one template: an idle minimal clone's private memory drops from
// ~23 to ~15.5 MiB under TCG (README, "Idle running instances"). An older
// kernel rejects the call (EINVAL), which is not an error: nothing merges there.
// Joining the cgroups is not done here: a v1 cgroup migration waits for an RCU
// grace period (~10 ms measured), so flickd does it beside QEMU's own start-up
// (jail.ts, `enter`).
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static int fail(const char *what, const char *arg) {
  fprintf(stderr, "flick-jailer: %s %s: %s\n", what, arg, strerror(errno));
  return 125;
}

int main(int argc, char **argv) {
  if (argc < 5 || strcmp(argv[3], "--") != 0) {
    fprintf(stderr, "usage: flick-jailer <run dir> <mount point> -- <program> <args>...\n");
    return 125;
  }
  const char *run_dir = argv[1], *mount_point = argv[2];
  const int i = 3;
  if (unshare(CLONE_NEWNS) != 0) return fail("unshare", "mount namespace");
  // Private first: the bind mount must not propagate back to the host's namespace.
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return fail("making / private", "");
  if (mount(run_dir, mount_point, NULL, MS_BIND, NULL) != 0) return fail("bind-mounting", run_dir);
  struct rlimit no_core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0) return fail("setrlimit", "RLIMIT_CORE");
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif
  // Optional (KSM may share the VMM's pages): a kernel without it (EINVAL, ENOSYS) or a jailer
  // without CAP_SYS_RESOURCE (EPERM) runs the VMM unmerged, with one line on stderr at most.
  if (prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) != 0) {
    if (errno != EINVAL && errno != ENOSYS && errno != EPERM) return fail("prctl", "PR_SET_MEMORY_MERGE");
    if (errno == EPERM) fprintf(stderr, "flick-jailer: PR_SET_MEMORY_MERGE not permitted (needs CAP_SYS_RESOURCE); the VMM's memory is not mergeable\n");
  }
  execvp(argv[i + 1], argv + i + 1);
  return fail("exec", argv[i + 1]);
}
