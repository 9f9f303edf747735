/* svc_hold: the sleeping service of bench/scale. Says "up\n", then holds the connection (and
 * so its instance and UID) until the peer closes it. Static, so 4,000 of them stay cheap. */
#include <unistd.h>

int main(void) {
  char buf[512];
  if (write(1, "up\n", 3) != 3) return 1;
  while (read(0, buf, sizeof buf) > 0) {
  }
  return 0;
}
