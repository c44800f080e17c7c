// Volumes: ext4 disks the host attached with a virtio serial of their own
// (src/vmm/qemu/args.ts driveArgs), mounted in the app's root filesystem at the
// paths the config disk names, before the app starts. A fresh volume (nothing
// but lost+found in it) gets its root owned by the app's uid/gid, so an image
// with `USER postgres` can write to it. At power-off each is unmounted, which
// commits its journal: the next mount needs no recovery.
#include "init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

// The serial of /dev/vdX, from sysfs (the virtio-blk driver exposes it); "" if none.
static void disk_serial(const char *dev, char *out, size_t n) {
  char p[96];
  out[0] = 0;
  snprintf(p, sizeof p, "/sys/block/%.16s/serial", dev + 5);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t r = read(fd, out, n - 1);
  close(fd);
  out[r > 0 ? r : 0] = 0;
  out[strcspn(out, "\n")] = 0;
}

int disk_is_volume(const char *dev) {
  char serial[32];
  disk_serial(dev, serial, sizeof serial);
  for (int i = 0; i < cfg.nvolumes; i++)
    if (serial[0] && !strcmp(serial, cfg.volumes[i].serial)) return 1;
  return 0;
}

static const char *find_disk(const char *serial) {
  static char dev[32];
  DIR *d = opendir("/sys/block");
  struct dirent *e;
  const char *found = NULL;
  while (d && (e = readdir(d)) && !found) {
    if (strncmp(e->d_name, "vd", 2) != 0 || strlen(e->d_name) > 16) continue;
    char s[32];
    snprintf(dev, sizeof dev, "/dev/%.16s", e->d_name);
    disk_serial(dev, s, sizeof s);
    if (!strcmp(s, serial)) found = dev;
  }
  if (d) closedir(d);
  return found;
}

static void mkdir_p(const char *path) {
  char p[256];
  snprintf(p, sizeof p, "%s", path);
  for (char *c = p + 1; *c; c++) {
    if (*c != '/') continue;
    *c = 0;
    mkdir(p, 0755);
    *c = '/';
  }
  mkdir(p, 0755);
}

// Nothing but lost+found: what mkfs.ext4 leaves.
static int fresh(const char *path) {
  DIR *d = opendir(path);
  if (!d) return 0;
  struct dirent *e;
  int other = 0;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "lost+found")) other = 1;
  closedir(d);
  return !other;
}

void mount_volumes(void) {
  for (int i = 0; i < cfg.nvolumes; i++) {
    struct volume *v = &cfg.volumes[i];
    const char *dev = find_disk(v->serial);
    if (!dev) fail(1, "volume for %s: no disk with serial %s is attached", v->path, v->serial);
    mkdir_p(v->path);
    // noinit_itable: the host made the disk with lazy inode tables, and zeroing them in the
    // background would grow the sparse file. noload (read-only): no journal replay, no write.
    unsigned long flags = MS_NOSUID | MS_NODEV | (v->ro ? MS_RDONLY : 0);
    if (mount(dev, v->path, "ext4", flags, v->ro ? "noload" : "noinit_itable") < 0)
      fail(1, "mount volume %s (%s) on %s: %s", v->serial, dev, v->path, strerror(errno));
    v->mounted = 1;
    struct stat st;
    if (!v->ro && (cfg.uid || cfg.gid) && stat(v->path, &st) == 0 && st.st_uid == 0 && fresh(v->path)) {
      if (chown(v->path, cfg.uid, cfg.gid) < 0) console("chown volume %s: %s", v->path, strerror(errno));
    }
  }
}

void unmount_volumes(void) {
  for (int i = cfg.nvolumes - 1; i >= 0; i--) {
    struct volume *v = &cfg.volumes[i];
    if (v->mounted && umount(v->path) < 0) console("unmount %s: %s", v->path, strerror(errno));
    v->mounted = 0;
  }
}
