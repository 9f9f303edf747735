/*
 * svc_hello: the trivial service every benchmark spawns.
 *
 * It writes "hello\n" to fd 1 (the accepted connection) and exits. It is
 * linked statically where the toolchain allows it so that the measured cost
 * is the spawn path (fork/exec/sandbox) and not the dynamic loader.
 */
#include <unistd.h>

int main(void)
{
	static const char msg[] = "hello\n";
	/* One write is enough: 6 bytes always fit a fresh socket buffer. A
	 * short write or an error only means the client went away; the exit
	 * code tells the caller nothing it could act on, so it is always 0. */
	(void)!write(1, msg, sizeof msg - 1);
	_exit(0);
}
