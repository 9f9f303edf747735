// The event log's formats: START/EXIT/REFUSE/FAIL with the fields log_on_success and
// log_on_failure select, and the stderr prefix (daemon/event_log.hpp).
#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "daemon/event_log.hpp"

using namespace superd;
namespace el = superd::daemon::event_log;
using std::chrono::milliseconds;

TEST_CASE("START and EXIT carry the fields log_on_success selects", "[event_log]") {
  el::Who w{"hello", 7, "127.0.0.1:4000", 61190, 4242};
  CHECK(el::start(w, config::kLogAll) == "START hello serial=7 peer=127.0.0.1:4000 uid=61190 pid=4242");
  CHECK(el::start(w, config::kLogPid) == "START hello serial=7 uid=61190 pid=4242");
  CHECK(el::start(w, config::kLogHost) == "START hello serial=7 peer=127.0.0.1:4000 uid=61190");
  CHECK(el::start(w, 0).empty());  // log_on_success = []: no line
  CHECK(el::exit(w, config::kLogAll, milliseconds(1234), "status=3", nullptr) ==
        "EXIT hello serial=7 peer=127.0.0.1:4000 uid=61190 pid=4242 duration=1.234s status=3");
  CHECK(el::exit(w, config::kLogExit, milliseconds(5), "signal=SIGSEGV", nullptr) ==
        "EXIT hello serial=7 uid=61190 signal=SIGSEGV");
  CHECK(el::exit(w, 0, milliseconds(5), "status=0", nullptr).empty());
}

TEST_CASE("a session has no UID and no PID; TRAFFIC adds the byte counts", "[event_log]") {
  el::Who w{"relay", 9, "[::1]:5000", el::kNoUid, 0};
  CHECK(el::start(w, config::kLogAll) == "START relay serial=9 peer=[::1]:5000");
  el::Traffic t{10, 20};
  CHECK(el::exit(w, config::kLogTraffic | config::kLogDuration, milliseconds(40), "status=0", &t) ==
        "EXIT relay serial=9 duration=0.040s bytes_in=10 bytes_out=20");
  CHECK(el::exit(w, config::kLogDuration, milliseconds(40), "status=0", &t) == "EXIT relay serial=9 duration=0.040s");
}

TEST_CASE("REFUSE follows log_on_failure; FAIL always logs", "[event_log]") {
  CHECK(el::refuse("hello", "10.0.0.1:1", "denied", config::kLogHost) ==
        "REFUSE hello peer=10.0.0.1:1 reason=\"denied\"");
  CHECK(el::refuse("hello", "10.0.0.1:1", "denied", config::kLogAttempt) == "REFUSE hello reason=\"denied\"");
  CHECK(el::refuse("hello", "10.0.0.1:1", "denied", 0).empty());
  el::Who w{"hello", 3, "127.0.0.1:9", 61184, 0};
  CHECK(el::fail(w, config::kLogHost, "step exec failed: ENOENT") ==
        "FAIL hello serial=3 peer=127.0.0.1:9 uid=61184: step exec failed: ENOENT");
  CHECK(el::fail(w, 0, "pipe2: EMFILE") == "FAIL hello serial=3 uid=61184: pipe2: EMFILE");
  CHECK(el::stderr_line(w, "oops") == "hello[3] uid=61184: oops");
}
