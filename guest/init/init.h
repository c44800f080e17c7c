// Declarations shared by the parts of Flick's guest init:
//   init.c     PID 1's flow: mounts, switch into the rootfs, the app, the main loop
//   config.c   the config disk (format defined in src/guest/config.ts)
//   control.c  the control port to the host, and how the VM ends
//   trace.c    trace mode: which files the app opens
//   listen.c   listen reports: which TCP ports the app listens on
//   health.c   the image's HEALTHCHECK, run in the guest
#pragma once
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/types.h>

#define CFG_MAX_LIST 4096
#define CFG_MAX_NAMESERVERS 8
#define CFG_MAX_DISKS 16
#define CFG_MAX_VOLUMES 8

// A volume to mount (config disk "volume=<serial>:<ro|rw>:<path>").
struct volume {
  const char *serial, *path;
  int ro;
  int mounted;
};

// What to run, from the config disk. Strings point into the disk's payload.
struct config {
  char *argv[CFG_MAX_LIST + 1];
  int argc;
  char *env[CFG_MAX_LIST + 8];  // room for the defaults init.c adds, and the NULL
  int envc;
  char *nameservers[CFG_MAX_NAMESERVERS];
  int nns;
  const char *cwd, *hostname;
  uid_t uid;
  gid_t gid;
  int trace;
  struct volume volumes[CFG_MAX_VOLUMES];
  int nvolumes;
  int listen;  // report listening TCP ports (listen.c)
  char *health[65];  // the HEALTHCHECK's argv, NULL-terminated (health.c)
  int nhealth;
  long health_interval_ms, health_timeout_ms, health_start_ms;
  int health_retries;
  int stopsignal;  // STOPSIGNAL, default SIGTERM
};
extern struct config cfg;

// init.c
void console(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void request_stop(void);
const char *resolve_program(const char *name);  // PATH lookup in the app's env  // the host asked for poweroff (or PID 1 got SIGTERM)
void unmount_volumes(void);  // before the VM ends: the journal is committed, the disk clean

// volumes.c: mounts each configured volume (found by its virtio serial) in the root filesystem.
int disk_is_volume(const char *dev);  // "/dev/vdX" holds one of cfg.volumes
void mount_volumes(void);

// config.c: fills cfg from the disk with the FLICKCFG magic; lists the other disks.
void read_config(char others[][32], int *nothers);

// control.c
extern int ctl_fd;   // the port, O_NONBLOCK; -1 without one
extern int ctl_hup;  // no host connected: leave the port out of poll() until SIGIO
void ctl_open(void);
void ctl_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ctl_pending(void);  // bytes waiting for the host
void ctl_flush(void);
void ctl_read(void);
__attribute__((noreturn)) void power_off(void);
__attribute__((noreturn, format(printf, 2, 3))) void fail(int code, const char *fmt, ...);

// trace.c
int trace_start(void);      // a fanotify fd watching the root mount
void trace_drain(int fd);   // sends "open <path>" once per new path

// listen.c
#define LISTEN_POLL_MS 50
void listen_poll(void);  // sends "listen <port>" once per new listening TCP port

// health.c
void health_begin(void);           // once the app has started
long health_wait_ms(void);         // until the next check or timeout; -1 without a HEALTHCHECK
void health_tick(int stopping);    // starts a due check, kills one past its timeout
int health_reaped(pid_t pid, int status);  // 1 if pid was the check
