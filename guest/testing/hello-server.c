// Test fixture: a minimal static HTTP/1.1 server for Flick's integration tests.
// Listens on the port in argv[1] (else $PORT, else 8080) on all addresses and
// answers every request, one connection at a time, with Connection: close:
//   GET /          200, body "hello from flick\ntime <unix>.<nanos>\nrequests <n>\nhostname <h>\n"
//                  time: the guest's wall clock (checks the clock after a restore);
//                  requests: served so far by this process (tells a stateful wake,
//                  which keeps the count, from a stateless one, which starts over).
//   GET /exit/<n>  answers, then exits with code n (the app ending its VM).
// With IGNORE_SIGTERM=1 in its environment it ignores SIGTERM (an app that
// will not stop, for the init's SIGKILL-after-grace path).
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  const char *port_s = argc > 1 ? argv[1] : getenv("PORT");
  int port = port_s ? atoi(port_s) : 8080;
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up early must not kill the server
  const char *ignore = getenv("IGNORE_SIGTERM");
  if (ignore && !strcmp(ignore, "1")) signal(SIGTERM, SIG_IGN);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 128) < 0) {
    perror("hello-server: listen");
    return 1;
  }
  printf("hello-server: listening on port %d\n", port);
  fflush(stdout);
  unsigned long served = 0;
  char host[65] = "";
  gethostname(host, sizeof host - 1);
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) continue;
    char req[4096];
    size_t len = 0;
    ssize_t n;
    // Read until the end of the request head; bodies are not expected.
    while (len < sizeof req - 1 && (n = read(c, req + len, sizeof req - 1 - len)) > 0) {
      len += n;
      req[len] = 0;
      if (strstr(req, "\r\n\r\n")) break;
    }
    req[len] = 0;
    served++;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char body[256], resp[512];
    int exit_code = -1;
    if (!strncmp(req, "GET /exit/", 10)) exit_code = atoi(req + 10);
    int bl = snprintf(body, sizeof body, "hello from flick\ntime %lld.%09ld\nrequests %lu\nhostname %s\n", (long long)now.tv_sec,
                      now.tv_nsec, served, host);
    int rl = snprintf(resp, sizeof resp,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", bl, body);
    if (write(c, resp, rl) < 0) perror("hello-server: write");
    shutdown(c, SHUT_WR);
    close(c);
    if (exit_code >= 0) {
      printf("hello-server: exiting with code %d as asked\n", exit_code);
      return exit_code;
    }
  }
}
