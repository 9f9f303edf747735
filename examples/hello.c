/* hello: the example per-connection service. Greets the peer with the UID superd leased for
 * this very connection, so two connections show two different UIDs. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
  const char* proto = getenv("PROTO");
  const char* addr = getenv("REMOTE_ADDR");
  const char* port = getenv("REMOTE_PORT");
  if (proto && addr)
    printf("hello %s:%s over %s, I am uid %u gid %u\n", addr, port ? port : "?", proto, (unsigned)getuid(),
           (unsigned)getgid());
  else
    printf("hello unix peer uid %s, I am uid %u gid %u\n", getenv("UNIXREMOTEEUID") ? getenv("UNIXREMOTEEUID") : "?",
           (unsigned)getuid(), (unsigned)getgid());
  return 0;
}
