// Flick's guest init: PID 1 of every microVM, started by the kernel from the
// initramfs (rdinit=/init). It finds the config disk (magic FLICKCFG, written
// by src/guest/config.ts), mounts the app's read-only rootfs under a tmpfs
// overlay, switches into it, runs the app as configured, reaps zombies, and
// ends the VM when the app exits, reporting its exit code on the control port.
//
// Control port: the virtio-serial port named dev.flick.ctl; line-based ASCII
// (the TypeScript side is src/guest/control.ts):
//   host->guest  "time <sec>.<9-digit nanos>"  -> "ok time"
//                "poweroff"                     -> SIGTERM app, SIGKILL after 5 s
//   guest->host  "hello", "started <pid>", "exit <code>", "open <path>" (trace
//                mode), "ok <command>", "error <text>"; an error that answers a
//                command reads "error <command>: <text>"
// Writes never block: lines wait in a queue until the host is connected.
//
// Build: musl-gcc -static -Os -o init init.c
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// ---- Config disk format (mirrors src/guest/config.ts; change both) ----------
// bytes 0..7   "FLICKCFG"
// bytes 8..11  format version, u32 little-endian (1)
// bytes 12..15 payload length, u32 little-endian
// payload      records "key=value\0"; argv/env/nameserver repeat, in order
// zero padding to a multiple of 512 bytes.
#define CFG_MAGIC "FLICKCFG"
#define CFG_VERSION 1
#define CFG_MAX_PAYLOAD (1u << 20)
#define CFG_MAX_LIST 4096

#define CTL_PORT_NAME "dev.flick.ctl"
#define STOP_GRACE_MS 5000
#define OUTQ_MAX (8u << 20)  // trace mode can queue many paths while the host is away

struct config {
  char *argv[CFG_MAX_LIST + 1];
  int argc;
  char *env[CFG_MAX_LIST + 8];
  int envc;
  char *nameservers[8];
  int nns;
  const char *cwd, *hostname;
  uid_t uid;
  gid_t gid;
  int trace;
};

static struct config cfg = {.cwd = "/", .hostname = "flick"};
static int ctl_fd = -1;          // control port, O_NONBLOCK
static int ctl_hup = 0;          // host not connected: leave the port out of poll until SIGIO
static char *outq;               // pending guest->host bytes
static size_t outq_len, outq_cap;
static char inbuf[4096];         // partial host->guest line
static size_t in_len;

// ---- console and control port output ---------------------------------------

static void console(const char *fmt, ...) {
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

static void flush_ctl(void) {
  while (ctl_fd >= 0 && outq_len > 0 && !ctl_hup) {
    ssize_t n = write(ctl_fd, outq, outq_len);
    if (n < 0) {
      // EAGAIN: virtqueue full or host not connected; poll() tells us when to retry.
      if (errno != EINTR) return;
      continue;
    }
    memmove(outq, outq + n, outq_len - n);
    outq_len -= n;
  }
}

// Queues one line for the host. Never blocks; drops the line if the queue is full.
static void ctl_send(const char *fmt, ...) {
  char line[PATH_MAX + 64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0 || ctl_fd < 0) return;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  for (int i = 0; i < n; i++)
    if (line[i] == '\n') line[i] = ' ';  // one message per line, whatever the text
  line[n++] = '\n';
  if (outq_len + n > outq_cap) {
    size_t cap = outq_cap ? outq_cap * 2 : 4096;
    while (cap < outq_len + n) cap *= 2;
    if (cap > OUTQ_MAX) return;
    char *q = realloc(outq, cap);
    if (!q) return;
    outq = q, outq_cap = cap;
  }
  memcpy(outq + outq_len, line, n);
  outq_len += n;
  flush_ctl();
}

// ---- power off ---------------------------------------------------------------

// Gives queued control lines a bounded chance to reach the host, then ends the
// VM: with reboot=t on the kernel command line and QEMU's -no-reboot,
// RB_AUTOBOOT makes QEMU exit (RB_POWER_OFF only halts the CPU with acpi=off).
static void power_off(void) {
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    flush_ctl();
    if (ctl_fd < 0 || outq_len == 0) break;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    // A connected host gets 2 s to drain; with none connected we wait 500 ms for one.
    if (ms > (ctl_hup ? 500 : 2000)) break;
    struct pollfd p = {.fd = ctl_fd, .events = POLLOUT};
    if (ctl_hup) {
      usleep(20000);
      ctl_hup = 0;  // probe again: poll reports POLLHUP while no host is connected
      if (poll(&p, 1, 0) > 0 && (p.revents & POLLHUP)) ctl_hup = 1;
    } else if (poll(&p, 1, 100) > 0 && (p.revents & POLLHUP)) {
      ctl_hup = 1;
    }
  }
  kill(-1, SIGKILL);
  sync();
  reboot(RB_AUTOBOOT);
  console("reboot failed: %s", strerror(errno));
  _exit(1);  // PID 1 exiting panics the kernel; panic=-1 then reboots, which also ends QEMU
}

// Reports a failure everywhere a human or the host will look, and ends the VM.
static void fail(int code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  console("%s", msg);
  ctl_send("error %s", msg);
  ctl_send("exit %d", code);
  power_off();
}

// ---- early setup ----------------------------------------------------------------

static void mount_or_fail(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
  mkdir(dst, 0755);
  if (mount(src, dst, type, flags, data) < 0) fail(1, "mount %s on %s (%s): %s", src, dst, type, strerror(errno));
}

// Finds /dev/vportNpM whose sysfs name is dev.flick.ctl. The name arrives in a
// virtio control message that may trail the device's creation, so wait up to 1 s
// while a port exists without a name.
static void open_control_port(void) {
  for (int tries = 0; tries < 100; tries++) {
    DIR *d = opendir("/sys/class/virtio-ports");
    if (!d) return;
    struct dirent *e;
    int unnamed = 0;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      char path[PATH_MAX], name[64] = "";
      snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ssize_t n = read(fd, name, sizeof name - 1);
      close(fd);
      if (n <= 0 || name[0] == '\n') {
        unnamed = 1;
        continue;
      }
      name[n] = 0;
      name[strcspn(name, "\n")] = 0;
      if (strcmp(name, CTL_PORT_NAME) != 0) continue;
      snprintf(path, sizeof path, "/dev/%s", e->d_name);
      ctl_fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
      if (ctl_fd < 0) console("cannot open control port %s: %s", path, strerror(errno));
      closedir(d);
      if (ctl_fd >= 0) {
        // The driver sends SIGIO when the host connects or disconnects: our only
        // wake-up while poll() is told to ignore a port that keeps reporting HUP.
        fcntl(ctl_fd, F_SETOWN, getpid());
        fcntl(ctl_fd, F_SETFL, fcntl(ctl_fd, F_GETFL) | O_ASYNC);
      }
      return;
    }
    closedir(d);
    if (!unnamed) return;
    usleep(10000);
  }
}

static uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static unsigned long parse_id(const char *key, const char *v) {
  char *end;
  errno = 0;
  unsigned long n = strtoul(v, &end, 10);
  if (errno || *end || !*v || n > 0xfffffffeUL) fail(1, "config disk: %s=%s is not a valid id", key, v);
  return n;
}

static void parse_config(char *p, size_t len) {
  char *end = p + len;
  while (p < end) {
    char *rec = p;
    size_t n = strnlen(rec, end - rec);
    if (rec + n == end) fail(1, "config disk: record not terminated");
    p = rec + n + 1;
    char *eq = strchr(rec, '=');
    if (!eq) fail(1, "config disk: record without '=': %.40s", rec);
    *eq = 0;
    char *v = eq + 1;
    if (!strcmp(rec, "argv")) {
      if (cfg.argc >= CFG_MAX_LIST) fail(1, "config disk: too many argv entries");
      cfg.argv[cfg.argc++] = v;
    } else if (!strcmp(rec, "env")) {
      if (cfg.envc >= CFG_MAX_LIST) fail(1, "config disk: too many env entries");
      cfg.env[cfg.envc++] = v;
    } else if (!strcmp(rec, "nameserver")) {
      if (cfg.nns < 8) cfg.nameservers[cfg.nns++] = v;
    } else if (!strcmp(rec, "cwd")) cfg.cwd = v;
    else if (!strcmp(rec, "hostname")) cfg.hostname = v;
    else if (!strcmp(rec, "uid")) cfg.uid = parse_id("uid", v);
    else if (!strcmp(rec, "gid")) cfg.gid = parse_id("gid", v);
    else if (!strcmp(rec, "trace")) cfg.trace = !strcmp(v, "1");
    // Unknown keys are skipped so that a newer host can add optional keys.
  }
  if (cfg.argc == 0) fail(1, "config disk: no argv");
}

// Reads the config disk (found by its magic) and returns the other disks'
// names in `others` for the rootfs probe.
static void read_config(char others[][32], int *nothers) {
  DIR *d = opendir("/sys/block");
  if (!d) fail(1, "cannot list /sys/block: %s", strerror(errno));
  struct dirent *e;
  int found = 0;
  *nothers = 0;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "vd", 2) != 0 || strlen(e->d_name) > 16) continue;
    char dev[32];
    snprintf(dev, sizeof dev, "/dev/%.16s", e->d_name);
    int fd = open(dev, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    unsigned char hdr[16];
    if (pread(fd, hdr, sizeof hdr, 0) == sizeof hdr && !memcmp(hdr, CFG_MAGIC, 8) && !found) {
      found = 1;
      if (le32(hdr + 8) != CFG_VERSION) fail(1, "config disk %s: version %u, this init reads %u", dev, le32(hdr + 8), CFG_VERSION);
      uint32_t len = le32(hdr + 12);
      if (len > CFG_MAX_PAYLOAD) fail(1, "config disk %s: payload of %u bytes is too large", dev, len);
      char *payload = malloc(len + 1);  // kept for the life of init: cfg points into it
      if (!payload || pread(fd, payload, len, 16) != (ssize_t)len) fail(1, "config disk %s: short read", dev);
      payload[len] = 0;
      parse_config(payload, len);
    } else if (*nothers < 16) {
      snprintf(others[(*nothers)++], 32, "%s", dev);
    }
    close(fd);
  }
  closedir(d);
  if (!found) fail(1, "no config disk: no /dev/vd* starts with " CFG_MAGIC " (attach one written by writeConfigDisk)");
}

// Mounts the first disk that holds erofs or squashfs read-only at /mnt/lower,
// a tmpfs at /mnt/rw for the overlay's writable layer, and the overlay at /mnt/root.
static void mount_root(char others[][32], int nothers) {
  mkdir("/mnt/lower", 0755);
  const char *src = NULL;
  for (int i = 0; i < nothers && !src; i++) {
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

// ---- the app ----------------------------------------------------------------------

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
static const char *resolve_program(const char *name) {
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

// ---- trace mode: which files does the app use? -----------------------------------

static char **seen;  // open-addressing set of reported paths
static size_t seen_cap, seen_len;

static int seen_add(const char *s) {
  if (seen_len * 2 >= seen_cap) {
    size_t cap = seen_cap ? seen_cap * 2 : 1024;
    char **t = calloc(cap, sizeof *t);
    if (!t) return 0;
    for (size_t i = 0; i < seen_cap; i++) {
      if (!seen[i]) continue;
      size_t h = 0;
      for (const char *c = seen[i]; *c; c++) h = h * 31 + (unsigned char)*c;
      while (t[h % cap]) h++;
      t[h % cap] = seen[i];
    }
    free(seen);
    seen = t, seen_cap = cap;
  }
  size_t h = 0;
  for (const char *c = s; *c; c++) h = h * 31 + (unsigned char)*c;
  for (;; h++) {
    char **slot = &seen[h % seen_cap];
    if (!*slot) {
      *slot = strdup(s);
      seen_len++;
      return 1;
    }
    if (!strcmp(*slot, s)) return 0;
  }
}

// FAN_MARK_MOUNT on the root: the overlay reports the paths the app sees
// (FAN_MARK_FILESYSTEM would need fsid support from overlayfs). Paths are as
// the kernel resolved them (symlinks followed); only successful opens count;
// directories the app opens (readdir) are reported too (FAN_ONDIR).
static int start_trace(void) {
  int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
  if (fd < 0) fail(1, "trace: fanotify_init: %s", strerror(errno));
  if (fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN | FAN_OPEN_EXEC | FAN_ONDIR, AT_FDCWD, "/") < 0)
    fail(1, "trace: fanotify_mark /: %s", strerror(errno));
  return fd;
}

static void drain_trace(int fd) {
  char buf[8192] __attribute__((aligned(8)));
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
      if (m->fd < 0) continue;
      char link[64], path[PATH_MAX];
      snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
      ssize_t l = readlink(link, path, sizeof path - 1);
      close(m->fd);
      if (l <= 0 || m->pid == getpid()) continue;
      path[l] = 0;
      if (seen_add(path)) ctl_send("open %s", path);
    }
  }
}

// ---- host->guest commands ----------------------------------------------------------

static pid_t app_pid;
static int stopping;
static struct timespec stop_deadline;

static void handle_command(char *line) {
  if (!strncmp(line, "time ", 5)) {
    char *dot, *end;
    long long sec = strtoll(line + 5, &dot, 10);
    long nsec = -1;
    // Exactly nine digits after the dot, so "1.5" cannot be misread as 5 ns.
    if (dot > line + 5 && *dot == '.') {
      nsec = strtol(dot + 1, &end, 10);
      if (end - dot != 10 || *end) nsec = -1;
    }
    struct timespec ts = {.tv_sec = sec, .tv_nsec = nsec};
    if (nsec < 0 || nsec > 999999999) ctl_send("error time: bad value %.40s", line + 5);
    else if (clock_settime(CLOCK_REALTIME, &ts) < 0) ctl_send("error time: clock_settime: %s", strerror(errno));
    else ctl_send("ok time");
  } else if (!strcmp(line, "poweroff")) {
    if (!stopping) {
      stopping = 1;
      kill(app_pid, SIGTERM);
      clock_gettime(CLOCK_MONOTONIC, &stop_deadline);
      stop_deadline.tv_sec += STOP_GRACE_MS / 1000;
    }
    ctl_send("ok poweroff");
  } else if (line[0]) {
    ctl_send("error unknown command: %.64s", line);
  }
}

static void read_ctl(void) {
  for (;;) {
    ssize_t n = read(ctl_fd, inbuf + in_len, sizeof inbuf - in_len);
    if (n <= 0) {
      if (n == 0) ctl_hup = 1;  // EOF: the host is not connected
      return;
    }
    in_len += n;
    char *nl;
    while ((nl = memchr(inbuf, '\n', in_len))) {
      *nl = 0;
      if (nl > inbuf && nl[-1] == '\r') nl[-1] = 0;
      handle_command(inbuf);
      in_len -= nl + 1 - inbuf;
      memmove(inbuf, nl + 1, in_len);
    }
    if (in_len == sizeof inbuf) in_len = 0;  // an absurd line: drop it rather than wedge
  }
}

// ---- main loop -----------------------------------------------------------------------

static int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(void) {
  // The kernel opened /dev/console (from the initramfs) on 0, 1, 2.
  mount_or_fail("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_or_fail("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_or_fail("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");

  // Signals arrive through a signalfd so one poll() serves everything.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGIO);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

  open_control_port();
  if (ctl_fd < 0) console("no control port named %s: running without one", CTL_PORT_NAME);
  ctl_send("hello");

  char others[16][32];
  int nothers;
  read_config(others, &nothers);
  mount_root(others, nothers);
  switch_root();
  setup_names();
  int tfd = cfg.trace ? start_trace() : -1;
  app_pid = start_app();
  ctl_send("started %d", app_pid);

  int code = -1;
  while (code < 0) {
    struct pollfd p[3] = {
        {.fd = sfd, .events = POLLIN},
        {.fd = ctl_hup ? -1 : ctl_fd, .events = POLLIN | (outq_len ? POLLOUT : 0)},
        {.fd = tfd, .events = POLLIN},
    };
    int timeout = -1;
    if (ctl_hup) timeout = 1000;  // belt and braces, should a SIGIO ever be missed
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

    if (p[1].revents & POLLHUP) ctl_hup = 1;
    else if (p[1].revents & POLLIN) read_ctl();
    if (p[1].revents & POLLOUT) flush_ctl();
    if (tfd >= 0 && (p[2].revents & POLLIN)) drain_trace(tfd);

    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == sizeof si) {
      if (si.ssi_signo == SIGIO) {
        ctl_hup = 0;  // the host's connection changed: let poll() say how
        flush_ctl();
      } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
        handle_command("poweroff");
      }
    }
    // Reap every child: the app, and orphans reparented to PID 1.
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
      if (pid == app_pid) code = exit_code_of(status);
  }
  if (tfd >= 0) drain_trace(tfd);
  console("app exited with code %d", code);
  ctl_send("exit %d", code);
  power_off();
}
