// The control port: a virtio-serial port named dev.flick.ctl, line-based ASCII
// (the host's side is src/guest/control.ts):
//   host->guest  "time <sec>.<9-digit nanos>"  -> "ok time"
//                "poweroff"                     -> "ok poweroff"; SIGTERM app, SIGKILL after 5 s
//   guest->host  "hello", "started <pid>", "exit <code>", "open <path>" (trace
//                mode), "listen <port>" (listen=1), "healthy"/"unhealthy" (HEALTHCHECK), "ok <command>", "error <text>"; an error that answers a
//                command reads "error <command>: <text>"
// Writes never block: lines wait in a queue until the host is connected.
// While no host is connected the port reports POLLHUP on every poll(), so the
// main loop leaves it out until the driver's SIGIO says the connection changed.
#include "init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

#define CTL_PORT_NAME "dev.flick.ctl"
#define OUTQ_MAX (8u << 20)  // trace mode can queue many paths while the host is away

int ctl_fd = -1;
int ctl_hup;
static char *outq;  // pending guest->host bytes
static size_t outq_len, outq_cap;
static char inbuf[4096];  // a partial host->guest line
static size_t in_len;

// Finds /dev/vportNpM whose sysfs name is dev.flick.ctl. The name arrives in a
// virtio control message that may trail the device's creation, so wait up to
// 1 s while a port exists without a name.
void ctl_open(void) {
  for (int tries = 0; tries < 100; tries++) {
    DIR *d = opendir("/sys/class/virtio-ports");
    if (!d) break;
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
      closedir(d);
      ctl_fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
      if (ctl_fd < 0) {
        console("cannot open control port %s: %s", path, strerror(errno));
        return;
      }
      // The driver signals SIGIO when the host connects or disconnects (and on input).
      fcntl(ctl_fd, F_SETOWN, getpid());
      fcntl(ctl_fd, F_SETFL, fcntl(ctl_fd, F_GETFL) | O_ASYNC);
      return;
    }
    closedir(d);
    if (!unnamed) break;
    usleep(10000);
  }
  console("no control port named %s: running without one", CTL_PORT_NAME);
}

int ctl_pending(void) { return outq_len > 0; }

void ctl_flush(void) {
  while (ctl_fd >= 0 && outq_len > 0 && !ctl_hup) {
    ssize_t n = write(ctl_fd, outq, outq_len);
    if (n < 0) {
      // EAGAIN: virtqueue full or no host; poll() or SIGIO says when to retry.
      if (errno != EINTR) return;
      continue;
    }
    memmove(outq, outq + n, outq_len - n);
    outq_len -= n;
  }
}

// Queues one line for the host. Never blocks; drops the line if the queue is full.
void ctl_send(const char *fmt, ...) {
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
  ctl_flush();
}

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
    request_stop();
    ctl_send("ok poweroff");
  } else if (line[0]) {
    ctl_send("error unknown command: %.64s", line);
  }
}

void ctl_read(void) {
  for (;;) {
    ssize_t n = read(ctl_fd, inbuf + in_len, sizeof inbuf - in_len);
    if (n <= 0) {
      if (n == 0) ctl_hup = 1;  // EOF: no host connected
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

// Gives queued lines a bounded chance to reach the host, then ends the VM:
// with reboot=t on the kernel command line and QEMU's -no-reboot, RB_AUTOBOOT
// makes QEMU exit (RB_POWER_OFF only halts the CPU with acpi=off).
void power_off(void) {
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    ctl_flush();
    if (ctl_fd < 0 || outq_len == 0) break;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    // A connected host gets 2 s to drain; with none connected we wait 500 ms for one.
    if (ms > (ctl_hup ? 500 : 2000)) break;
    struct pollfd p = {.fd = ctl_fd, .events = POLLOUT};
    if (ctl_hup) {
      usleep(20000);
      ctl_hup = 0;  // probe again: poll() reports POLLHUP while no host is connected
      if (poll(&p, 1, 0) > 0 && (p.revents & POLLHUP)) ctl_hup = 1;
    } else if (poll(&p, 1, 100) > 0 && (p.revents & POLLHUP)) {
      ctl_hup = 1;
    }
  }
  kill(-1, SIGKILL);
  sync();
  unmount_volumes();
  reboot(RB_AUTOBOOT);
  console("reboot failed: %s", strerror(errno));
  _exit(1);  // PID 1 exiting panics the kernel; panic=-1 then reboots, which also ends QEMU
}

// Reports a failure everywhere a human or the host will look, and ends the VM.
void fail(int code, const char *fmt, ...) {
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
