// Test fixture: reports what the guest init gave it, then exits with the code
// in argv[1] (default 0). Prints to stdout (the console) one line each:
//   exit-code: argv <argv...>
//   exit-code: uid <uid> gid <gid> groups <n> cwd <cwd> hostname <name>
//   exit-code: env <KEY=VALUE>        (one line per variable)
//   exit-code: exiting with <code>
// With argv[2] = "stderr" it prints the last line on stderr instead.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
  int code = argc > 1 ? atoi(argv[1]) : 0;
  printf("exit-code: argv");
  for (int i = 0; i < argc; i++) printf(" %s", argv[i]);
  char cwd[PATH_MAX] = "?", host[65] = "?";
  if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "?");
  gethostname(host, sizeof host - 1);
  printf("\nexit-code: uid %d gid %d groups %d cwd %s hostname %s\n", (int)getuid(), (int)getgid(), getgroups(0, NULL), cwd, host);
  for (char **e = environ; *e; e++) printf("exit-code: env %s\n", *e);
  fflush(stdout);
  FILE *out = argc > 2 && !strcmp(argv[2], "stderr") ? stderr : stdout;
  fprintf(out, "exit-code: exiting with %d\n", code);
  fflush(out);
  return code;
}
