// The image's HEALTHCHECK, run by the init in the guest (config keys health=…):
// the command runs as the app's user, in its cwd and env, output discarded,
// killed after its timeout. Until the first success it runs every 250 ms (so
// readiness is quick), then every interval. The first success, and every return
// to health, sends "healthy"; `retries` failures in a row (failures inside the
// start period do not count) send "unhealthy". The host waits for "healthy"
// before a fresh VM counts as ready (src/vmm/qemu, the build's trace runner).
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_INTERVAL_MS 250

static pid_t hc_pid;
static long long hc_started, hc_next, hc_began;
static int hc_fails;
static int hc_state;  // 0 starting, 1 healthy, 2 unhealthy

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void health_begin(void) {
  if (cfg.nhealth == 0) return;
  hc_began = now_ms();
  hc_next = hc_began;
}

long health_wait_ms(void) {
  if (cfg.nhealth == 0) return -1;
  long long due = hc_pid ? hc_started + cfg.health_timeout_ms : hc_next;
  long long ms = due - now_ms();
  return ms < 0 ? 0 : (long)ms;
}

static void run_check(void) {
  const char *prog = resolve_program(cfg.health[0]);
  hc_started = now_ms();
  pid_t pid = fork();
  if (pid < 0) return;
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) dup2(devnull, 0), dup2(devnull, 1), dup2(devnull, 2);
    if (!prog || setgroups(1, &cfg.gid) < 0 || setgid(cfg.gid) < 0 || setuid(cfg.uid) < 0 || chdir(cfg.cwd) < 0) _exit(127);
    execve(prog, cfg.health, cfg.env);
    _exit(127);
  }
  hc_pid = pid;
}

void health_tick(int stopping) {
  if (cfg.nhealth == 0) return;
  long long now = now_ms();
  if (hc_pid && now - hc_started >= cfg.health_timeout_ms) kill(-hc_pid, SIGKILL);  // reaped as a failure
  else if (!hc_pid && !stopping && now >= hc_next) run_check();
}

int health_reaped(pid_t pid, int status) {
  if (!hc_pid || pid != hc_pid) return 0;
  hc_pid = 0;
  long long now = now_ms();
  int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (ok) {
    hc_fails = 0;
    if (hc_state != 1) ctl_send("healthy");
    hc_state = 1;
  } else if (now - hc_began >= cfg.health_start_ms && ++hc_fails >= cfg.health_retries && hc_state != 2) {
    hc_state = 2;
    ctl_send("unhealthy");
  }
  hc_next = now + (hc_state == 0 ? START_INTERVAL_MS : cfg.health_interval_ms);
  return 1;
}
