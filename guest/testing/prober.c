// Test fixture: a hostile-guest stand-in for Flick's security tests. A minimal
// static HTTP/1.1 server (port in argv[1], else 8080; one connection at a time,
// Connection: close) that does, from inside the guest, what the host asks:
//   GET /                     200 "prober\n" (alive)
//   GET /connect/<ipv4>/<port> tries a TCP connection (2 s timeout) and answers
//                             "connected", "refused", "timeout" or "error <errno>"
//   GET /headers              the request head as the guest received it (what a proxy passed on)
//   GET /alloc/<mib>          a child process allocates and touches <mib> MiB, then
//                             exits 0; answers "exit <code>" or "signal <n>" (the
//                             guest kernel's OOM killer sends 9)
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void try_connect(const char *ip, int port, char *out, size_t n) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
    snprintf(out, n, "error bad-address");
    return;
  }
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
    snprintf(out, n, "connected");
  } else if (errno != EINPROGRESS) {
    snprintf(out, n, errno == ECONNREFUSED ? "refused" : "error %d", errno);
  } else {
    struct pollfd p = {.fd = s, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof err;
    if (poll(&p, 1, 2000) <= 0) snprintf(out, n, "timeout");
    else if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) snprintf(out, n, "connected");
    else snprintf(out, n, err == ECONNREFUSED ? "refused" : "error %d", err);
  }
  close(s);
}

static void alloc(long mib, char *out, size_t n) {
  pid_t pid = fork();
  if (pid == 0) {
    for (long i = 0; i < mib; i++) {
      char *p = malloc(1 << 20);
      if (!p) _exit(2);
      memset(p, 0xa5, 1 << 20);  // touch every page: untouched memory costs nothing
    }
    _exit(0);
  }
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) < 0) snprintf(out, n, "error %d", errno);
  else if (WIFSIGNALED(st)) snprintf(out, n, "signal %d", WTERMSIG(st));
  else snprintf(out, n, "exit %d", WEXITSTATUS(st));
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8080;
  signal(SIGPIPE, SIG_IGN);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 128) < 0) {
    perror("prober: listen");
    return 1;
  }
  printf("prober: listening on port %d\n", port);
  fflush(stdout);
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) continue;
    char req[2048];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof req - 1 && (r = read(c, req + len, sizeof req - 1 - len)) > 0) {
      len += r;
      req[len] = 0;
      if (strstr(req, "\r\n\r\n")) break;
    }
    req[len] = 0;
    char body[128] = "prober\n", ip[64];
    int p;
    long mib;
    const char *out = body;
    if (sscanf(req, "GET /connect/%63[0-9.]/%d ", ip, &p) == 2) try_connect(ip, p, body, sizeof body);
    else if (sscanf(req, "GET /alloc/%ld ", &mib) == 1) alloc(mib, body, sizeof body);
    else if (strncmp(req, "GET /headers ", 13) == 0) out = req;
    char resp[2560];
    int rl = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                      strlen(out), out);
    if (write(c, resp, rl) < 0) perror("prober: write");
    shutdown(c, SHUT_WR);
    close(c);
  }
}
