/* echo: copies the connection back to itself until the peer closes (RFC 862 over a service). */
#include <errno.h>
#include <unistd.h>

int main(void) {
  char buf[16384];
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(1, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return 1;
      off += w;
    }
  }
}
