// Flick's guest init: PID 1 of every microVM, started by the kernel from the
// initramfs (rdinit=/init). It finds the config disk (config.c), mounts the
// app's read-only rootfs (erofs, else squashfs) under a tmpfs overlay,
// switches into it, runs the app as configured, reaps zombies, and ends the VM
// when the app exits, reporting its exit code on the control port (control.c).
// Any failure is printed on the console as "flick-init: ...", sent as
// "error ..." and "exit <1 or 127>", and ends the VM: it never hangs.
//
// Build: musl-gcc -static -Os -o init init.c config.c control.c trace.c volumes.c listen.c health.c
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STOP_GRACE_MS 5000

static pid_t app_pid;
static int stopping;
static struct timespec stop_deadline;

void console(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  // The console is a blocking serial line; short lines, so this is fine.
  if (write(2, "flick-init: ", 12) < 0 || write(2, buf, n) < 0) return;
}

// ---- the root filesystem ------------------------------------------------------------

static void mount_or_fail(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
  mkdir(dst, 0755);
  if (mount(src, dst, type, flags, data) < 0) fail(1, "mount %s on %s (%s): %s", src, dst, type, strerror(errno));
}

// Mounts the first disk that holds erofs or squashfs read-only at /mnt/lower,
// a tmpfs at /mnt/rw for the overlay's writable layer, and the overlay at /mnt/root.
static void mount_root(char others[][32], int nothers) {
  mkdir("/mnt/lower", 0755);
  const char *src = NULL;
  for (int i = 0; i < nothers && !src; i++) {
    if (disk_is_volume(others[i])) continue;  // ext4 volumes are mounted later, where the app wants them
    if (mount(others[i], "/mnt/lower", "erofs", MS_RDONLY, NULL) == 0 ||
        mount(others[i], "/mnt/lower", "squashfs", MS_RDONLY, NULL) == 0)
      src = others[i];
  }
  if (!src) fail(1, "no root filesystem: none of the %d non-config disks mounts as erofs or squashfs", nothers);
  mount_or_fail("tmpfs", "/mnt/rw", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
  mkdir("/mnt/rw/upper", 0755);
  mkdir("/mnt/rw/work", 0755);
  mount_or_fail("overlay", "/mnt/root", "overlay", 0, "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work");
}

// switch_root without the deletion: the initramfs is tiny, and /init is still
// running from it. /proc /sys /dev move along so nothing is mounted twice.
static void switch_root(void) {
  const char *keep[] = {"/proc", "/sys", "/dev"};
  for (int i = 0; i < 3; i++) {
    char dst[64];
    snprintf(dst, sizeof dst, "/mnt/root%s", keep[i]);
    mkdir(dst, 0755);
    if (mount(keep[i], dst, NULL, MS_MOVE, NULL) < 0) fail(1, "move %s into the root filesystem: %s", keep[i], strerror(errno));
  }
  if (chdir("/mnt/root") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0)
    fail(1, "switch to the root filesystem: %s", strerror(errno));
  mount_or_fail("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  mount_or_fail("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  mount_or_fail("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  // devtmpfs lacks these conveniences that programs (and shells) expect.
  symlink("/proc/self/fd", "/dev/fd");
  symlink("/proc/self/fd/0", "/dev/stdin");
  symlink("/proc/self/fd/1", "/dev/stdout");
  symlink("/proc/self/fd/2", "/dev/stderr");
  symlink("pts/ptmx", "/dev/ptmx");
}

static int file_empty(const char *path) {
  struct stat st;
  return stat(path, &st) < 0 || st.st_size == 0;
}

static void write_file(const char *path, const char *text) {
  unlink(path);  // may be a dangling symlink or a read-only lower file: replace it
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, text, strlen(text)) < 0) console("cannot write %s: %s", path, strerror(errno));
  if (fd >= 0) close(fd);
}

static void setup_names(void) {
  if (sethostname(cfg.hostname, strlen(cfg.hostname)) < 0) console("sethostname: %s", strerror(errno));
  mkdir("/etc", 0755);
  // Like a container runtime: /etc/hosts is the runtime's, always.
  char hosts[512];
  snprintf(hosts, sizeof hosts, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n", cfg.hostname);
  write_file("/etc/hosts", hosts);
  if (!file_empty("/etc/resolv.conf")) return;
  char resolv[1024] = "";
  for (int i = 0; i < cfg.nns; i++) {
    size_t l = strlen(resolv);
    snprintf(resolv + l, sizeof resolv - l, "nameserver %s\n", cfg.nameservers[i]);
  }
  // Without configured servers, use what the kernel's ip= parameter gave, if any.
  if (!resolv[0]) {
    int fd = open("/proc/net/pnp", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n = read(fd, resolv, sizeof resolv - 1);
      resolv[n > 0 ? n : 0] = 0;
      close(fd);
      if (!strstr(resolv, "nameserver")) resolv[0] = 0;
    }
  }
  if (resolv[0]) write_file("/etc/resolv.conf", resolv);
}

// ---- the app ------------------------------------------------------------------------

static const char *getenv_in(char **env, const char *key) {
  size_t k = strlen(key);
  for (char **e = env; *e; e++)
    if (!strncmp(*e, key, k) && (*e)[k] == '=') return *e + k + 1;
  return NULL;
}

static void default_env(const char *key, const char *value) {
  if (getenv_in(cfg.env, key)) return;
  char *kv = malloc(strlen(key) + strlen(value) + 2);
  if (!kv) return;
  sprintf(kv, "%s=%s", key, value);
  cfg.env[cfg.envc++] = kv;
  cfg.env[cfg.envc] = NULL;
}

// execvp semantics, but with the app's PATH rather than init's.
const char *resolve_program(const char *name) {
  if (strchr(name, '/')) return name;
  static char buf[PATH_MAX];
  const char *p = getenv_in(cfg.env, "PATH");
  while (p && *p) {
    size_t n = strcspn(p, ":");
    snprintf(buf, sizeof buf, "%.*s/%s", (int)n, n ? p : ".", name);
    if (access(buf, X_OK) == 0) return buf;
    p += n + (p[n] == ':');
  }
  return NULL;
}

static pid_t start_app(void) {
  cfg.env[cfg.envc] = NULL;
  default_env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  default_env("HOSTNAME", cfg.hostname);
  default_env("HOME", cfg.uid == 0 ? "/root" : "/");
  cfg.argv[cfg.argc] = NULL;
  const char *prog = resolve_program(cfg.argv[0]);
  if (!prog) fail(127, "exec %s: not found in PATH %s", cfg.argv[0], getenv_in(cfg.env, "PATH"));

  // The child reports a failed exec through this close-on-exec pipe; EOF means exec worked.
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) fail(1, "pipe: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) fail(1, "fork: %s", strerror(errno));
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);  // init blocks signals for its signalfd
    setsid();
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull > 0) dup2(devnull, 0), close(devnull);
    const char *step = "setgroups";
    int err = 0;
    if (setgroups(1, &cfg.gid) < 0) err = errno;
    else if (step = "setgid", setgid(cfg.gid) < 0) err = errno;
    else if (step = "setuid", setuid(cfg.uid) < 0) err = errno;
    else if (step = "chdir", chdir(cfg.cwd) < 0) err = errno;
    else {
      step = "exec";
      execve(prog, cfg.argv, cfg.env);
      err = errno;
    }
    char msg[64];
    int n = snprintf(msg, sizeof msg, "%s:%d", step, err);
    if (write(pipefd[1], msg, n) < 0) _exit(127);
    _exit(127);
  }
  close(pipefd[1]);
  char msg[64] = "";
  ssize_t n;
  while ((n = read(pipefd[0], msg, sizeof msg - 1)) < 0 && errno == EINTR) {}
  close(pipefd[0]);
  if (n > 0) {
    msg[n] = 0;
    char *colon = strchr(msg, ':');
    int err = colon ? atoi(colon + 1) : 0;
    if (colon) *colon = 0;
    waitpid(pid, NULL, 0);
    if (!strcmp(msg, "chdir")) fail(127, "chdir %s: %s", cfg.cwd, strerror(err));
    fail(127, "%s %s (uid %u gid %u): %s", msg, prog, cfg.uid, cfg.gid, strerror(err));
  }
  return pid;
}

// SIGTERM now, SIGKILL when the grace period is over (the main loop's poll timeout).
void request_stop(void) {
  if (stopping) return;
  stopping = 1;
  kill(app_pid, cfg.stopsignal > 0 ? cfg.stopsignal : SIGTERM);
  clock_gettime(CLOCK_MONOTONIC, &stop_deadline);
  stop_deadline.tv_sec += STOP_GRACE_MS / 1000;
}

static int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// ---- the main loop ------------------------------------------------------------------

int main(void) {
  // The kernel opened /dev/console (from the initramfs) on 0, 1, 2.
  mount_or_fail("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_or_fail("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_or_fail("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");

  // Signals arrive through a signalfd so that one poll() serves everything.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGIO);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

  ctl_open();
  ctl_send("hello");

  char others[CFG_MAX_DISKS][32];
  int nothers;
  read_config(others, &nothers);
  mount_root(others, nothers);
  switch_root();
  mount_volumes();
  setup_names();
  int tfd = cfg.trace ? trace_start() : -1;  // before the app starts, so its exec is seen
  app_pid = start_app();
  health_begin();
  ctl_send("started %d", app_pid);

  int code = -1;
  while (code < 0) {
    struct pollfd p[3] = {
        {.fd = sfd, .events = POLLIN},
        {.fd = ctl_hup ? -1 : ctl_fd, .events = POLLIN | (ctl_pending() ? POLLOUT : 0)},
        {.fd = tfd, .events = POLLIN},
    };
    int timeout = ctl_hup ? 1000 : -1;  // belt and braces, should a SIGIO ever be missed
    long hw = health_wait_ms();
    if (hw >= 0 && (timeout < 0 || hw < timeout)) timeout = (int)hw;
    if (cfg.listen) {
      listen_poll();
      if (timeout < 0 || timeout > LISTEN_POLL_MS) timeout = LISTEN_POLL_MS;
    }
    if (stopping) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      long ms = (stop_deadline.tv_sec - now.tv_sec) * 1000 + (stop_deadline.tv_nsec - now.tv_nsec) / 1000000;
      if (ms <= 0) {
        kill(app_pid, SIGKILL);
        ms = 1000;
      }
      if (timeout < 0 || ms < timeout) timeout = ms;
    }
    if (poll(p, 3, timeout) < 0 && errno != EINTR) fail(1, "poll: %s", strerror(errno));

    // Read before noting a hang-up: a host may send "poweroff" and disconnect at once.
    if (p[1].revents & POLLIN) ctl_read();
    if (p[1].revents & POLLHUP) ctl_hup = 1;
    if (p[1].revents & POLLOUT) ctl_flush();
    if (tfd >= 0 && (p[2].revents & POLLIN)) trace_drain(tfd);

    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == sizeof si) {
      if (si.ssi_signo == SIGIO) {
        ctl_hup = 0;  // the host's connection changed: let poll() say how
        ctl_flush();
      } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
        request_stop();
      }
    }
    // Reap every child: the app, and orphans reparented to PID 1.
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == app_pid) code = exit_code_of(status);
      else health_reaped(pid, status);
    }
    health_tick(stopping);
  }
  if (tfd >= 0) trace_drain(tfd);
  console("app exited with code %d", code);
  ctl_send("exit %d", code);
  power_off();
}
