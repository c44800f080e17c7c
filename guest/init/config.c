// The config disk: the host's instructions, found among /dev/vd* by its magic.
// Format (defined in src/guest/config.ts; change both together):
//   bytes 0..7   "FLICKCFG"
//   bytes 8..11  format version, u32 little-endian (1)
//   bytes 12..15 payload length, u32 little-endian
//   payload      records "key=value\0"; argv/env/nameserver repeat, in order
//   zero padding to a multiple of 512 bytes.
// Unknown keys are skipped, so a newer host can add optional keys.
#include "init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CFG_MAGIC "FLICKCFG"
#define CFG_VERSION 1
#define CFG_MAX_PAYLOAD (1u << 20)

struct config cfg = {.cwd = "/", .hostname = "flick"};

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
      if (cfg.nns < CFG_MAX_NAMESERVERS) cfg.nameservers[cfg.nns++] = v;
    } else if (!strcmp(rec, "cwd")) cfg.cwd = v;
    else if (!strcmp(rec, "hostname")) cfg.hostname = v;
    else if (!strcmp(rec, "uid")) cfg.uid = parse_id("uid", v);
    else if (!strcmp(rec, "gid")) cfg.gid = parse_id("gid", v);
    else if (!strcmp(rec, "trace")) cfg.trace = !strcmp(v, "1");
    else if (!strcmp(rec, "volume")) {
      // <serial>:<ro|rw>:<path>; the path may hold ':' itself.
      char *c1 = strchr(v, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
      if (!c2 || c2[1] != '/') fail(1, "config disk: volume=%.60s is not <serial>:<ro|rw>:<path>", v);
      if (cfg.nvolumes >= CFG_MAX_VOLUMES) fail(1, "config disk: more than %d volumes", CFG_MAX_VOLUMES);
      *c1 = 0;
      *c2 = 0;
      struct volume *vol = &cfg.volumes[cfg.nvolumes++];
      vol->serial = v;
      vol->ro = !strcmp(c1 + 1, "ro");
      vol->path = c2 + 1;
    }
    else if (!strcmp(rec, "listen")) cfg.listen = !strcmp(v, "1");
    else if (!strcmp(rec, "health")) {
      if (cfg.nhealth >= 64) fail(1, "config disk: more than 64 health entries");
      cfg.health[cfg.nhealth++] = v;
    } else if (!strcmp(rec, "health_interval_ms")) cfg.health_interval_ms = atol(v);
    else if (!strcmp(rec, "health_timeout_ms")) cfg.health_timeout_ms = atol(v);
    else if (!strcmp(rec, "health_start_ms")) cfg.health_start_ms = atol(v);
    else if (!strcmp(rec, "health_retries")) cfg.health_retries = atoi(v);
    else if (!strcmp(rec, "stopsignal")) cfg.stopsignal = atoi(v);
  }
  if (cfg.argc == 0) fail(1, "config disk: no argv");
}

void read_config(char others[][32], int *nothers) {
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
    if (!found && pread(fd, hdr, sizeof hdr, 0) == sizeof hdr && !memcmp(hdr, CFG_MAGIC, 8)) {
      found = 1;
      if (le32(hdr + 8) != CFG_VERSION) fail(1, "config disk %s: version %u, this init reads %u", dev, le32(hdr + 8), CFG_VERSION);
      uint32_t len = le32(hdr + 12);
      if (len > CFG_MAX_PAYLOAD) fail(1, "config disk %s: payload of %u bytes is too large", dev, len);
      char *payload = malloc(len + 1);  // never freed: cfg points into it
      if (!payload || pread(fd, payload, len, 16) != (ssize_t)len) fail(1, "config disk %s: short read", dev);
      payload[len] = 0;
      parse_config(payload, len);
    } else if (*nothers < CFG_MAX_DISKS) {
      snprintf(others[(*nothers)++], 32, "%s", dev);
    }
    close(fd);
  }
  closedir(d);
  if (!found) fail(1, "no config disk: no /dev/vd* starts with " CFG_MAGIC " (attach one written by writeConfigDisk)");
}
