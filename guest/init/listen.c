// Listen reports (config key listen=1, set by `flick build`'s boots): once the
// app runs, the init reads /proc/net/tcp and tcp6 every 50 ms and sends
// "listen <port>" once per TCP port that enters LISTEN. This is readiness that
// says nothing to the app (no probe bytes, any protocol) and needs no port to be
// known in advance (a Dockerfile without EXPOSE).
#include "init.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PORTS 64
static unsigned seen[MAX_PORTS];
static int nseen;

static void scan(const char *file) {
  FILE *f = fopen(file, "re");
  if (!f) return;
  char line[512];
  if (!fgets(line, sizeof line, f)) goto out;  // the header
  while (fgets(line, sizeof line, f)) {
    // "  0: 00000000:1F90 00000000:0000 0A ..." (local address:port, remote, state; hex)
    char local[128], remote[128];
    unsigned state;
    if (sscanf(line, "%*s %127s %127s %x", local, remote, &state) != 3 || state != 0x0A) continue;
    char *colon = strrchr(local, ':');
    if (!colon) continue;
    unsigned port = (unsigned)strtoul(colon + 1, NULL, 16);
    int known = 0;
    for (int i = 0; i < nseen; i++) known |= seen[i] == port;
    if (known || nseen == MAX_PORTS) continue;
    seen[nseen++] = port;
    ctl_send("listen %u", port);
  }
out:
  fclose(f);
}

void listen_poll(void) {
  scan("/proc/net/tcp");
  scan("/proc/net/tcp6");
}
